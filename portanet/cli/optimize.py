"""``portanet optimize``, ``bench`` and ``report`` (the ``[optimize]`` and ``[report]`` extras).

Each parses its options and calls one library function; the libraries are imported inside the
commands so that ``portanet --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from portanet.cli.app import app, guarded, out
from portanet.cli.options import AllowUnsafe, AsJson, OnnxModel, Provider, Threads, providers_arg
from portanet.options import (
    DEFAULT_BENCH_BATCH_SIZES,
    DEFAULT_CALIBRATION_ROWS,
    DEFAULT_MAX_ABS,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_THROUGHPUT_BATCH,
    OPTIMIZE_TRANSFORMS,
    BenchOptions,
    OptimizeOptions,
)

if TYPE_CHECKING:  # rich.table is imported when a table is printed (keeps `infer` fast)
    from rich.table import Table


class Ops(str, Enum):
    """Which operators the chosen file may use."""

    standard = "standard"
    any = "any"


class Goal(str, Enum):
    """The speed-up that decides."""

    latency = "latency"
    throughput = "throughput"


class Target(str, Enum):
    """Where an optimized model will run."""

    cpu = "cpu"
    cuda = "cuda"


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def candidates_table(result: Any) -> Table:
    """The rich table of every candidate ``optimize`` measured."""
    from rich.table import Table

    table = Table(
        title=f"portanet optimize: {result.evaluation_rows} held-out rows, "
        f"{result.calibration_rows} calibration rows, target {result.target}"
    )
    columns = (
        "candidate",
        "MB",
        "max abs",
        "max rel",
        "agree",
        "vs Keras",
        f"p50 ms b{result.batch}",
        "× (spread)",
        f"rows/s b{result.throughput_batch}",
        "×  (spread)",
        "ops",
        "verdict",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("candidate", "verdict") else "right")
    for c in result.candidates:
        chosen = result.chosen is not None and c.name == result.chosen.name
        verdict = (
            f"[red]error[/] {escape(c.error)}"
            if c.error
            else "[bold green]chosen[/]"
            if chosen
            else f"[yellow]{escape(c.excluded)}[/]"
            if c.excluded and c.within_budget
            else "[green]ok[/]"
            if c.within_budget
            else f"[yellow]{escape('; '.join(c.failed_checks))}[/]"
        )
        table.add_row(
            escape(c.name),
            _fmt(c.size_bytes / 1e6 if c.size_bytes else None, ".2f"),
            _fmt(c.max_abs),
            _fmt(c.max_rel),
            "-" if c.agreement is None else f"{100 * c.agreement:.2f}%",
            _fmt(c.keras_max_abs),
            _fmt(c.latency.p50_s * 1e3 if c.latency else None, ".3f"),
            _speed(c.speedup, c.speedup_spread),
            _fmt(c.throughput.rows_per_s if c.throughput else None, ",.0f"),
            _speed(c.throughput_speedup, c.throughput_spread),
            "ORT-only" if c.nonstandard_ops else "standard",
            verdict,
        )
    table.caption = (
        f"budget: {result.budget.describe()}; × = median speed-up over float32 in alternating "
        f"slices (20th–80th percentile); a gain counts when the low end > "
        f"{1 + result.to_dict()['margin']:g}×; agree = labels unchanged; ops: standard ONNX or "
        f"onnxruntime-only (--ops {result.ops})"
    )
    return table


def _speed(value: float | None, spread: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ({spread[0]:.2f}–{spread[1]:.2f})" if spread else f"{value:.2f}"


def int8_table(result: Any) -> Table | None:
    """The int8 search's steps: recipe, nodes kept in float, what each bought."""
    from rich.table import Table

    found = next((c for c in result.candidates if c.int8), None)
    if found is None:
        return None
    info = found.int8
    vnni = {True: "VNNI", False: "no VNNI: 7-bit weights", None: "VNNI unknown"}[info["cpu_vnni"]]
    table = Table(title=f"int8 search ({found.name}; CPU {vnni})")
    for column in ("step", "recipe", "float nodes", "agree", "max abs", "budget"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for i, step in enumerate(info["steps"], 1):
        table.add_row(
            str(i),
            escape(step["recipe"] + (f" ({step['note']})" if step["note"] else "")),
            str(step["float_nodes"]),
            "-" if step["agreement"] is None else f"{100 * step['agreement']:.2f}%",
            _fmt(step["max_abs"]),
            "[green]inside[/]" if step["inside"] else "[yellow]outside[/]",
        )
    table.caption = f"kept: {info['recipe']} with {len(info['float_nodes'])} node(s) in float" + (
        f" ({', '.join(info['float_nodes'][:8])}{'…' if len(info['float_nodes']) > 8 else ''})"
        if info["float_nodes"]
        else ""
    )
    if info.get("speed_float_nodes"):
        table.caption += f", and {len(info['speed_float_nodes'])} kept float for speed"
    return table


@app.command(
    epilog="Example: portanet optimize model.onnx --data rows.npy --source model.h5 --max-abs 1e-3"
)
@guarded
def optimize(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL", show_default=False, help="ONNX model file (float32, from export)."
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            help="Rows to calibrate and measure on (NPY/NPZ in the Keras layout, or a table)."
        ),
    ],
    source: Annotated[
        Path | None,
        typer.Option(help="Keras file the model came from: errors are also measured against it."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write the chosen variant (default: MODEL.optimized.onnx)."),
    ] = None,
    max_abs: Annotated[
        float,
        typer.Option(
            help="Largest absolute error allowed against float32 (and Keras); inf for none."
        ),
    ] = DEFAULT_MAX_ABS,
    min_agreement: Annotated[
        float, typer.Option(help="Smallest share of unchanged labels allowed (classifiers).")
    ] = DEFAULT_MIN_AGREEMENT,
    target: Annotated[Target, typer.Option(help="Where the model will run.")] = Target.cpu,
    try_: Annotated[
        str,
        typer.Option("--try", help="Transforms to try: ort,slim,fp16,int8-dynamic,int8-static."),
    ] = ",".join(OPTIMIZE_TRANSFORMS),
    report: Annotated[
        Path | None, typer.Option(help="Also write the candidate table as JSON.")
    ] = None,
    calibration_rows: Annotated[
        int,
        typer.Option(
            help="Rows of --data that calibrate int8 static (at most half); the rest are split "
            "into rows the int8 search chooses on and rows every verdict is measured on."
        ),
    ] = DEFAULT_CALIBRATION_ROWS,
    seconds: Annotated[float, typer.Option(help="Seconds of timing per candidate.")] = 1.0,
    throughput_batch: Annotated[
        int, typer.Option(help="Batch size of the throughput measurement.")
    ] = DEFAULT_THROUGHPUT_BATCH,
    threads: Threads = None,
    transformed_only: Annotated[
        bool, typer.Option("--transformed-only", help="Never choose the unchanged float32 model.")
    ] = False,
    ops: Annotated[
        Ops,
        typer.Option(
            help="standard: choose only files any ONNX runtime runs; any: also "
            "onnxruntime-only (com.microsoft) operators."
        ),
    ] = Ops.standard,
    goal: Annotated[
        Goal,
        typer.Option(help="The speed-up that decides: batch-1 latency or throughput."),
    ] = Goal.latency,
    allow_unsafe: AllowUnsafe = False,
) -> None:
    """Write the fastest variant of MODEL that stays inside an accuracy budget (exit 1 and
    nothing written if none does)."""
    from portanet.errors import ParityError
    from portanet.optimize import optimize_model

    options = OptimizeOptions(
        source=source,
        output=output,
        report=report,
        max_abs=max_abs,
        min_agreement=min_agreement,
        target=target.value,
        transforms=try_,
        calibration_rows=calibration_rows,
        seconds=seconds,
        throughput_batch=throughput_batch,
        threads=threads,
        allow_unsafe=allow_unsafe,
        transformed_only=transformed_only,
        ops=ops.value,
        goal=goal.value,
    )
    try:
        result = optimize_model(model, data, options)
    except ParityError as exc:
        if exc.report is not None:
            _print_result(exc.report)
        raise
    _print_result(result)
    chosen = result.chosen
    assert chosen is not None  # optimize_model raises when nothing is chosen
    out.print(
        f"wrote {result.output} ({chosen.name}: {chosen.speedup:.2f}× at batch "
        f"{result.batch}, {chosen.throughput_speedup:.2f}× at batch {result.throughput_batch}, "
        f"max abs {chosen.max_abs:.3g}, {chosen.portability} ONNX)",
        highlight=False,
    )


def _print_result(result: Any) -> None:
    out.print(candidates_table(result))
    steps = int8_table(result)
    if steps is not None:
        out.print(steps)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)


@app.command(epilog="Example: portanet bench model.onnx --batch-sizes 1,64 --json")
@guarded
def bench(
    model: OnnxModel,
    source: Annotated[
        Path | None,
        typer.Option(help="Keras file to time in the same run (ratio ONNX / Keras)."),
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = ",".join(
        map(str, DEFAULT_BENCH_BATCH_SIZES)
    ),
    seconds: Annotated[float, typer.Option(help="Seconds of timing per batch size.")] = 5.0,
    provider: Provider = None,
    threads: Threads = None,
    data: Annotated[
        Path | None, typer.Option(help="Rows to feed (default: seeded random values).")
    ] = None,
    as_json: AsJson = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Draw latency and throughput against batch size (.png, .svg, .pdf)."),
    ] = None,
    allow_unsafe: AllowUnsafe = False,
) -> None:
    """Latency p50/p90/p99 and rows/s per batch size (and Keras' with --source)."""
    from portanet.optimize.bench import bench_model

    options = BenchOptions(
        source=source,
        batch_sizes=batch_sizes,
        seconds=seconds,
        provider=providers_arg(provider),
        threads=threads,
        data=data,
        plot=plot,
        allow_unsafe=allow_unsafe,
    )
    result = bench_model(model, options)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"portanet bench: {model.name} on {result.providers[0]}")
    for column in ("batch", "p50 ms", "p90 ms", "p99 ms", "rows/s") + (
        ("Keras p50 ms", "Keras rows/s", "ONNX/Keras") if result.keras else ()
    ):
        table.add_column(column, justify="right")
    for i, o in enumerate(result.onnx):
        row = [
            str(o.batch),
            f"{o.p50_s * 1e3:.3f}",
            f"{o.p90_s * 1e3:.3f}",
            f"{o.p99_s * 1e3:.3f}",
            f"{o.rows_per_s:,.0f}",
        ]
        if result.keras:
            k = result.keras[i]
            row += [
                f"{k.p50_s * 1e3:.3f}",
                f"{k.rows_per_s:,.0f}",
                f"{o.rows_per_s / k.rows_per_s:.2f}×",
            ]
        table.add_row(*row)
    out.print(table)
    if plot is not None:
        out.print(f"wrote {plot}", highlight=False)


@app.command(
    name="report",
    epilog="Example: portanet report model.onnx --bench bench.json --output model.report.html",
)
@guarded
def report_command(
    model: OnnxModel,
    output: Annotated[
        Path | None, typer.Option(help="HTML file to write (default: MODEL.report.html).")
    ] = None,
    bench: Annotated[
        Path | None, typer.Option(help="A 'portanet bench --json' file to include.")
    ] = None,
) -> None:
    """Write one self-contained HTML page: model card, parity, training, optimization,
    speed."""
    from portanet.report import write_report

    path = write_report(model, output, bench=bench)
    out.print(f"wrote {path}", highlight=False)
