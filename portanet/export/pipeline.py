"""Keras → ONNX through tf2onnx, with a parity gate before anything is written.

:func:`export_model` runs five stages, each once and in order, each handing its result to the
next as a value (nothing is set on the loaded model and read back):

1. **load** (:mod:`portanet.export.keras.load`) → :class:`~portanet.export.keras.load.LoadedKeras`;
2. **convert** (memory preflight, then :mod:`portanet.export.convert.keras_to_onnx`) →
   :class:`~portanet.export.convert.keras_to_onnx.Converted` (graph, external weights, trace);
3. **check** (``onnx.checker`` and onnxruntime) → :class:`Runnable`;
4. **gate** (:mod:`portanet.export.verify.gate`; skipped with ``verify=False``) →
   :class:`~portanet.export.verify.gate.GateReport`, and with ``data`` a folder of images the
   author's image pipeline against portanet's on those files
   (:mod:`portanet.export.verify.pipeline_parity`);
5. **write**: the schema, provenance, parity and this run's own time and peak memory
   (:class:`~portanet.export.timeline.StageRecord`) as metadata, written atomically.

Options come in one :class:`~portanet.options.ExportOptions`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portanet import __version__
from portanet import schema as meta
from portanet._files import check_writable, refuse_overwrite, write_bytes
from portanet.errors import ConversionError, InputError, first_line
from portanet.export.convert.keras_to_onnx import (
    Converted,
    convert,
    streamed_bytes,
    weight_bytes,
)
from portanet.export.described import build_schema
from portanet.export.keras.load import LoadedKeras, from_model, load_keras
from portanet.export.preflight import check_memory, peak_rss, release_memory
from portanet.export.timeline import STAGES as STAGES  # re-exported: the stages' labels
from portanet.export.timeline import StageRecord, Timeline, run_record
from portanet.export.verify.compare import ParityReport
from portanet.export.verify.runners import NCHW_KEY
from portanet.options import ExportOptions
from portanet.schema import METRICS_ATTR, ModelSchema


@dataclass(frozen=True)
class Runnable:
    """A converted graph that passed ``onnx.checker`` and loads in onnxruntime: the session
    (``runtime``), what it was loaded from (``candidate``: bytes, or the staged path of a graph
    with external data), the staging (``staged``, or ``None``) and the ``schema`` recorded."""

    runtime: Any
    candidate: bytes | Path
    staged: Any
    schema: ModelSchema
    #: Image input name → the preprocessing recipe recorded (:class:`portanet.images.Recipe`).
    recipes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: the file (``path``, and ``data`` for its external weights), the
    recorded ``schema``, the gate's ``report`` (``None`` when skipped), the ``stages`` as they
    ran, the run's ``seconds`` and ``peak_rss`` (bytes), the ``loaded`` model, the image
    ``recipes`` recorded and, with ``data`` a folder of images, the ``pipeline`` parity report."""

    path: Path | None
    schema: ModelSchema
    report: ParityReport | None
    opset: int
    seconds: float
    loaded: LoadedKeras
    stages: tuple[StageRecord, ...] = ()
    peak_rss: int = 0
    data: Path | None = None
    memory_estimate: int | None = None
    recipes: dict[str, Any] = dataclasses.field(default_factory=dict)
    pipeline: Any = None

    def run_record(self) -> dict[str, Any]:
        """This export's own time and memory, JSON-ready."""
        return run_record(list(self.stages), self.memory_estimate)


def _tool_versions(opset: int) -> dict[str, Any]:
    import onnx
    import tensorflow as tf
    import tf2onnx

    versions = {
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "opset": opset,
    }
    for name in ("keras", "tf_keras"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def load_stage(source: Any, output: Any, options: ExportOptions) -> tuple[LoadedKeras, Path]:
    """Stage 1: the loaded model and the path it will be written to (checked writable)."""
    if isinstance(source, (str, os.PathLike)):  # before any work: never write over an input
        default = Path(source).with_suffix(".onnx")  # an .onnx source fails to load instead
        labels = options.labels
        label_file = labels if labels and Path(labels).is_file() else None
        data = options.data if isinstance(options.data, (str, os.PathLike)) else None
        reads = {"SOURCE": source, "--data": data, "--labels": label_file}
        refuse_overwrite(
            {"--output": output or (default if default != Path(source) else None)}, reads
        )
    if isinstance(source, LoadedKeras):
        loaded = source
    elif isinstance(source, (str, os.PathLike)):
        loaded = load_keras(source, allow_unsafe=options.allow_unsafe)
    else:
        loaded = from_model(source)
    if output is None and loaded.format == "memory":
        raise InputError(
            f"model {loaded.path.name!r}: expected an output path for a model "
            f"that has no file, got none"
        )
    target = Path(output) if output else loaded.path.with_suffix(".onnx")
    check_writable(target)
    return loaded, target


def convert_stage(loaded: LoadedKeras, options: ExportOptions) -> tuple[Converted, int | None]:
    """Stage 2: the memory preflight (unless ``options.memory_check`` is off), then the
    conversion; returns it with the memory estimate (bytes, ``None`` when not checked)."""
    from portanet.export.convert.lifted import lifted_for

    cleanup, lift = options.graph_cleanup(), not options.layerwise  # layerwise: tf2onnx's names
    estimate = None
    if options.memory_check:
        streamed = streamed_bytes(loaded.model)
        lifted = lifted_for(loaded, cleanup, lift) if not streamed else None
        lifted_bytes = lifted.nbytes if lifted is not None else 0
        total = weight_bytes(loaded.model)
        estimate = check_memory(total, loaded.path, cleanup, streamed, lifted_bytes)
    converted = convert(
        loaded,
        opset=options.opset,
        batch_size=options.batch_size,
        inputs_as_nchw=options.inputs_as_nchw,
        cleanup=cleanup,
        lift_weights=lift,
    )
    return converted, estimate


def check_stage(
    loaded: LoadedKeras, converted: Converted, target: Path, options: ExportOptions
) -> Runnable:
    """Stage 3: the schema and image recipes recorded, then ``onnx.checker`` and an
    onnxruntime session."""
    from portanet.export.recorded import image_recipes
    from portanet.runtime import load

    schema = build_schema(
        loaded,
        converted.inputs,
        converted.proto,
        list(options.feature_names) if options.feature_names else None,
        labels=options.labels,
        image_size=options.image_size,
        image_range=options.image_range,
        channel_order=options.channel_order,
        nchw=converted.nchw,
        trace=converted.trace,
    )
    if converted.nchw:
        schema = dataclasses.replace(schema, extra={**schema.extra, NCHW_KEY: converted.nchw})
    recipes = image_recipes(
        schema.images, options.image_steps(), range_given=bool(options.image_range)
    )
    schema = dataclasses.replace(
        schema, images={name: recipe.image_spec() for name, recipe in recipes.items()}
    )
    _set_metadata(
        converted.proto,
        {
            meta.VERSION: __version__,
            meta.SCHEMA: schema.to_dict(),
            meta.PREPROCESSING: {n: r.to_dict() for n, r in recipes.items()} or None,
        },
    )
    staged = _staged(converted, loaded, target)  # over 2 GB: the graph and its external data
    candidate = staged.path if staged is not None else _checked_bytes(converted.proto, loaded.path)
    try:
        runtime = load(candidate, providers="cpu")
    except Exception as exc:
        if staged is not None:
            staged.discard()
        raise ConversionError(
            f"{loaded.path}: the converted ONNX model does not load in "
            f"onnxruntime: {first_line(exc)}"
        ) from exc
    return Runnable(runtime, candidate, staged, schema, recipes)


def gate_stage(
    loaded: LoadedKeras, converted: Converted, runnable: Runnable, options: ExportOptions
) -> tuple[Any, Any]:
    """Stage 4: the parity gate's :class:`~portanet.export.verify.gate.GateReport` and, with
    ``data`` a folder of images, the pipeline parity report (the gate then runs on synthetic
    tensors and the author's image pipeline is compared with portanet's on the files); raises
    :class:`~portanet.errors.ParityError` (carrying the report) when Keras and ONNX differ."""
    from portanet.export.verify.gate import run_gate
    from portanet.export.verify.pipeline_parity import check as check_pipeline
    from portanet.export.verify.pipeline_parity import compare_pipelines, image_files

    photos = image_files(options.data) if isinstance(options.data, (str, os.PathLike)) else []
    gate = run_gate(
        loaded,
        runnable.runtime,
        runnable.schema,
        data=None if photos else options.data,
        atol=options.atol,
        rtol=options.rtol,
        seed=options.seed,
        onnx_model=runnable.candidate,
        layerwise=options.layerwise,
        tolerance_mode=options.tolerance_mode,
        trace=converted.trace,
        external=converted.external,
    )
    pipeline = None
    if photos:
        pipeline = compare_pipelines(
            loaded.model, runnable.runtime, photos, atol=max(options.atol, 1e-4)
        )
        check_pipeline(pipeline)
    return gate, pipeline


def write_stage(
    loaded: LoadedKeras,
    converted: Converted,
    runnable: Runnable,
    gate: Any,
    pipeline: Any,
    target: Path,
    run: dict[str, Any],
    options: ExportOptions,
) -> Path:
    """Stage 5: provenance, parity (with the charts the report computes from the gate's
    outputs) and ``run`` (this export's time and memory so far) as metadata; the file written
    atomically (with its external data, data first)."""
    parity: dict[str, Any] = {"skipped": True}
    if gate is not None:
        from portanet.report.payload import chart_payload

        parity = gate.report.to_dict()
        parity.pop("layerwise", None)  # the per-layer table goes to --report, not the file
        charts = chart_payload(gate.reference, gate.candidate, layerwise=gate.report.layerwise)
        parity["charts"] = charts
    if pipeline is not None:
        parity["pipeline"] = {k: v for k, v in pipeline.to_dict().items() if k != "files"}
    _set_metadata(
        converted.proto,
        {
            meta.SOURCE: {
                "file": loaded.path.name,
                "sha256": loaded.sha256,
                "format": loaded.format,
                "keras_version": loaded.keras_version,
                "loader": loaded.loader,
            },
            meta.TOOLS: _tool_versions(options.opset),
            meta.PARITY: parity,
            meta.METRICS: loaded.portanet_attribute(METRICS_ATTR),
            meta.EXPORT_RUN: run,
        },
    )
    # Only metadata changed since the checker ran on the candidate: no second check.
    if runnable.staged is not None:
        return Path(runnable.staged.publish(converted.proto))
    write_bytes(target, converted.proto.SerializeToString())
    return target


def export_model(
    source: str | os.PathLike[str] | LoadedKeras | Any,
    output: str | os.PathLike[str] | None = None,
    options: ExportOptions | None = None,
    *,
    on_stage: Callable[[str], None] | None = None,
    **keywords: Any,
) -> ExportResult:
    """Convert a Keras model to ONNX, prove parity, then write it atomically.

    ``source`` is a model file (``.h5``, ``.keras``, SavedModel directory), a
    :class:`~portanet.export.keras.load.LoadedKeras` or a live Keras model (then ``output`` is
    required). ``output`` defaults to the source path with the suffix ``.onnx``. ``options``
    (:class:`~portanet.options.ExportOptions`) says what to do; its fields may also be
    given as keywords (``export_model(path, out, atol=1e-4)``), which override ``options``.
    ``on_stage`` receives each stage's label as it starts (:data:`STAGES`).

    A failing gate raises :class:`~portanet.errors.ParityError` and writes nothing; a model
    whose conversion would not fit in memory is refused before converting (exit 3). A model over
    2 GB is written with its large weights in ``<output>.data`` beside it
    (:mod:`portanet.export.convert.external`).
    """
    steps = keywords.pop("image_steps", None) or {}  # {"preset": ..., "resize": ...} as one
    keywords.update({f"image_{key}": value for key, value in steps.items() if value is not None})
    options = dataclasses.replace(options or ExportOptions(), **keywords)
    if options.layerwise and not options.verify:
        raise InputError("layerwise comparison: expected the parity gate to run, got verify=False")
    timeline = Timeline(on_stage)
    timeline.start("load")
    loaded, target = load_stage(source, output, options)
    timeline.end()
    timeline.start("convert")
    converted, estimate = convert_stage(loaded, options)
    release_memory()  # TensorFlow's and tf2onnx's graphs: garbage from here on
    timeline.end()
    timeline.start("check")
    runnable = check_stage(loaded, converted, target, options)
    if isinstance(runnable.candidate, bytes):  # the checked bytes hold the graph until the write
        converted = dataclasses.replace(converted, proto=None)
        release_memory()
    timeline.end()
    gate = pipeline = None
    if options.verify:
        timeline.start("gate")
        gate, pipeline = gate_stage(loaded, converted, runnable, options)
        timeline.end()
    # The onnxruntime session and the checked bytes (a copy of every weight each) are done
    # with: the graph is read back from the bytes and they are freed before the write.
    if isinstance(runnable.candidate, bytes) and converted.proto is None:
        import onnx

        converted = dataclasses.replace(converted, proto=onnx.load_from_string(runnable.candidate))
    runnable = dataclasses.replace(runnable, runtime=None, candidate=b"")
    release_memory()
    timeline.start("write")
    run = run_record(timeline.records, estimate)
    path = write_stage(loaded, converted, runnable, gate, pipeline, target, run, options)
    timeline.end()
    return ExportResult(
        path,
        runnable.schema,
        gate.report if gate is not None else None,
        options.opset,
        sum(r.seconds for r in timeline.records),
        loaded,
        tuple(timeline.records),
        peak_rss(),
        path.with_name(f"{path.name}.data") if converted.external is not None else None,
        estimate,
        runnable.recipes,
        pipeline,
    )


def _set_metadata(proto: Any, values: dict[str, Any]) -> None:
    encoded = meta.encode(values)
    kept = [p for p in proto.metadata_props if p.key not in encoded]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in encoded.items():
        proto.metadata_props.add(key=key, value=value)


def _staged(converted: Converted, loaded: LoadedKeras, target: Path) -> Any:
    """The graph and its external data staged beside ``target``, checked by ``onnx.checker``
    (:class:`~portanet.export.convert.external.StagedModel`, removed when published or
    dropped); ``None`` for a model that fits in one file."""
    if converted.external is None:
        return None
    from portanet.export.convert.external import StagedModel

    staged = StagedModel(converted.proto, converted.external, target)
    try:
        staged.check()
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        staged.discard()
        raise ConversionError(
            f"{loaded.path}: the converted ONNX model is invalid (onnx.checker): {first_line(exc)}"
        ) from exc
    return staged


def _checked_bytes(proto: Any, source: Path) -> bytes:
    import onnx

    data = proto.SerializeToString()
    try:  # the bytes themselves: no second parsed copy of every weight in Python
        onnx.checker.check_model(data, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise ConversionError(
            f"{source}: the converted ONNX model is invalid (onnx.checker): {first_line(exc)}"
        ) from exc
    return data
