"""``portanet export`` and ``portanet verify``: the export side, imported per command."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from portanet.cli import parity_view
from portanet.cli.app import app, err, guarded, out
from portanet.cli.options import (
    AllowUnsafe,
    AsJson,
    Atol,
    ChannelOrderOption,
    GateData,
    ImageExifOption,
    ImageFilterOption,
    ImageLibraryOption,
    ImagePreset,
    ImageRange,
    ImageResizeOption,
    Layerwise,
    Rtol,
    choice_value,
    split_names,
)
from portanet.options import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL, ExportOptions

if TYPE_CHECKING:  # rich.table is imported when a table is printed (keeps `infer` fast)
    pass


class ToleranceMode(str, Enum):
    """How the gate judges elements beyond atol/rtol (portanet.export.verify.compare)."""

    strict = "strict"
    noise_floor = "noise-floor"


class GraphCleanup(str, Enum):
    """Who cleans the converted graph (portanet.export.convert.lean)."""

    auto = "auto"
    tf2onnx = "tf2onnx"
    onnxruntime = "onnxruntime"


ToleranceOption = Annotated[
    ToleranceMode,
    typer.Option(
        "--tolerance-mode",
        case_sensitive=False,
        help="strict: every element within atol/rtol. noise-floor: also accept elements within 4x "
        "the measured noise floor (the model's own float32 sensitivity).",
    ),
]


def _write_report(path: Path | None, report: Any, run: dict[str, Any] | None = None) -> None:
    """The parity report as JSON, with the export's own time and memory (``export``) when
    given."""
    if path is not None:
        from portanet._files import write_bytes

        document = report.to_dict()
        if run is not None:
            document["export"] = run
        write_bytes(path, json.dumps(document, indent=2).encode() + b"\n")


@app.command(
    epilog="Example: portanet export model.h5 --output model.onnx --data rows.csv --report r.json"
)
@guarded
def export(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE", show_default=False, help="Keras .h5, .keras or SavedModel directory."
        ),
    ],
    output: Annotated[Path | None, typer.Option(help="ONNX path (default: SOURCE.onnx).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset to write.")] = DEFAULT_OPSET,
    data: GateData = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = DEFAULT_RTOL,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run the parity gate (default) or skip it.")
    ] = True,
    feature_names: Annotated[
        list[str] | None,
        typer.Option(
            "--feature-names",
            metavar="NAME",
            help="Column names of a tabular model's input (repeat or comma-separate).",
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the parity report JSON.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Fix the exported graph's batch dimension to N (default: dynamic)."
        ),
    ] = None,
    inputs_as_nchw: Annotated[
        list[str] | None,
        typer.Option(
            "--inputs-as-nchw",
            metavar="NAME",
            help="Image input the ONNX graph takes channels-first (repeat or comma-separate).",
        ),
    ] = None,
    layerwise: Layerwise = False,
    allow_unsafe: AllowUnsafe = False,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            metavar="FILE",
            help="Class names: a file (Teachable Machine's labels.txt '0 Name' lines, or one name "
            "a line) or a comma-separated list; infer writes them as 'label'.",
        ),
    ] = None,
    image_size: Annotated[
        str | None,
        typer.Option(
            "--image-size",
            metavar="HxW",
            help="Size images are resized to for an image input, e.g. 224x224 (default: the "
            "input's own size).",
        ),
    ] = None,
    image_range: ImageRange = None,
    channel_order: ChannelOrderOption = None,
    image_preset: ImagePreset = None,
    image_resize: ImageResizeOption = None,
    image_filter: ImageFilterOption = None,
    image_library: ImageLibraryOption = None,
    image_exif: ImageExifOption = None,
    tolerance_mode: ToleranceOption = ToleranceMode.strict,
    memory_check: Annotated[
        bool,
        typer.Option(
            "--memory-check/--no-memory-check",
            help="Refuse (exit 3) before converting when the estimated peak memory exceeds what "
            "is available (default), or try anyway.",
        ),
    ] = True,
    graph_cleanup: Annotated[
        GraphCleanup,
        typer.Option(
            "--graph-cleanup",
            case_sensitive=False,
            help="Who cleans the converted graph: tf2onnx's optimizers (the layerwise table "
            "finds every layer), onnxruntime's basic offline optimization (faster, about a third "
            "less peak memory), or auto (default): onnxruntime, tf2onnx with --layerwise.",
        ),
    ] = GraphCleanup.auto,
    mkdir: Annotated[
        bool,
        typer.Option("--mkdir", help="Create the folders of --output and --report if missing."),
    ] = False,
) -> None:
    """Convert a Keras model to ONNX; the file is written only if Keras and ONNX agree."""
    from portanet._files import refuse_overwrite, require_folder
    from portanet.errors import InputError, ParityError
    from portanet.export import export_model
    from portanet.export.recorded import parse_image_size
    from portanet.schema import check_unique

    require_export_side()
    if layerwise and not verify:
        raise InputError("--layerwise: expected the parity gate to run, got --no-verify")
    size = parse_image_size(image_size) if image_size else None
    check_unique(split_names(feature_names))
    default = source.with_suffix(".onnx")  # an .onnx source fails to load instead (exit 3)
    refuse_overwrite(
        {"--output": output or (default if default != source else None), "--report": report},
        {
            "SOURCE": source,
            "--data": data,
            "--labels": labels if labels and Path(labels).is_file() else None,
        },
    )
    require_folder(output, mkdir)  # as infer: a missing folder only with --mkdir
    require_folder(report, mkdir, "--report")
    options = ExportOptions(
        opset=opset,
        data=data,
        atol=atol,
        rtol=rtol,
        verify=verify,
        feature_names=tuple(split_names(feature_names)) or None,
        batch_size=batch_size,
        inputs_as_nchw=tuple(split_names(inputs_as_nchw)) or None,
        layerwise=layerwise,
        allow_unsafe=allow_unsafe,
        labels=labels,
        image_size=size,
        image_range=image_range,
        channel_order=choice_value(channel_order),
        image_preset=image_preset,
        image_resize=choice_value(image_resize),
        image_filter=choice_value(image_filter),
        image_library=choice_value(image_library),
        image_exif=None if image_exif is None else image_exif.value == "apply",
        tolerance_mode=tolerance_mode.value,
        memory_check=memory_check,
        cleanup=graph_cleanup.value,
    )
    try:
        with _stages() as on_stage:
            result = export_model(source, output, options, on_stage=on_stage)
    except ParityError as exc:
        if exc.report is not None:
            parity_view.print_reports(exc.report, "parity gate: Keras vs ONNX")
            _write_report(report, exc.report)
            parity_view.hint_noise_floor(exc.report)
        raise
    if result.report is not None:
        parity_view.print_reports(result.report, "parity gate: Keras vs ONNX")
        _write_report(report, result.report, result.run_record())
    else:
        err.print(
            "[yellow]warning:[/] parity gate skipped (--no-verify): the ONNX file is not "
            "proven to match Keras"
        )
    if result.pipeline is not None:
        parity_view.show_pipeline(result.pipeline, False)
    for name, recipe in result.recipes.items():
        err.print(
            escape(f"image input {name}: {recipe.describe()}"), highlight=False, soft_wrap=True
        )
    beside = f" + {result.data.name}" if result.data is not None else ""
    out.print(
        f"wrote {result.path}{beside} (opset {result.opset}, {result.seconds:.1f} s, "
        f"peak memory {result.peak_rss / 2**30:.2f} GiB, loaded with {result.loaded.loader})",
        highlight=False,
    )


def require_export_side() -> None:
    """Fail at once, naming the extra, when the export side's libraries are not installed
    (a deployment-only install) — not after reading the model, with a traceback."""
    import importlib.util

    for name in ("tensorflow", "tf2onnx", "onnx", "h5py"):
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@contextlib.contextmanager
def _stages() -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the export's current stage (when stderr is a terminal)."""
    if not err.is_terminal:
        yield None
        return
    with err.status("starting") as status:
        yield lambda name: status.update(f"{name}…")


@app.command(
    name="verify",
    epilog="Example: portanet verify m.h5 m.onnx --data rows.npy --tolerance-mode noise-floor",
)
@guarded
def verify_command(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", show_default=False, help="Keras model file.")
    ],
    onnx_file: Annotated[
        Path, typer.Argument(metavar="ONNX", show_default=False, help="ONNX model file.")
    ],
    data: GateData = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = DEFAULT_RTOL,
    layerwise: Layerwise = False,
    as_json: AsJson = False,
    allow_unsafe: AllowUnsafe = False,
    tolerance_mode: ToleranceOption = ToleranceMode.strict,
) -> None:
    """Compare a Keras model with an ONNX model on the same inputs (exit 1 if they differ)."""
    require_export_side()
    from portanet.errors import ParityError

    if data is not None and data.is_dir():  # image files: the author's pipeline vs portanet's
        _verify_pipeline(source, onnx_file, data, atol, rtol, as_json, allow_unsafe)
        return
    from portanet.export.verify.gate import verify

    try:
        report = verify(
            source,
            onnx_file,
            data=data,
            atol=atol,
            rtol=rtol,
            layerwise=layerwise,
            allow_unsafe=allow_unsafe,
            tolerance_mode=tolerance_mode.value,
        )
    except ParityError as exc:
        if exc.report is not None:
            parity_view.show(exc.report, as_json, f"{source.name} vs {onnx_file.name}")
            parity_view.hint_noise_floor(exc.report)
        raise
    parity_view.show(report, as_json, f"{source.name} vs {onnx_file.name}")


def _verify_pipeline(
    source: Path,
    onnx_file: Path,
    data: Path,
    atol: float,
    rtol: float,
    as_json: bool,
    allow_unsafe: bool,
) -> None:
    from portanet.errors import ParityError
    from portanet.export.verify.pipeline_parity import pipeline_parity

    try:
        report = pipeline_parity(
            source, onnx_file, data, atol=atol, rtol=rtol, allow_unsafe=allow_unsafe
        )
    except ParityError as exc:
        if exc.report is not None:
            parity_view.show_pipeline(exc.report, as_json)
        raise
    parity_view.show_pipeline(report, as_json)
