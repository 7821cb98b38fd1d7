"""The ``portanet`` command line: each command parses options and calls one library function.

The export side (TensorFlow, tf2onnx, onnx) is imported inside the commands that need it, so
``portanet infer`` and ``portanet inspect`` start without TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from portanet.errors import PortanetError

# TensorFlow's C++ start-up logging would bury the one line a user needs; only errors pass.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Keras → ONNX with a parity gate, and fast TensorFlow-free inference.")
out = Console()
err = Console(stderr=True)
_state = {"debug": bool(os.environ.get("PORTANET_DEBUG"))}
F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 70


def _guarded(func: F) -> F:
    """Turn a PortanetError into one red line on stderr and its exit code (traceback: --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PortanetError as exc:
            if _state["debug"]:
                raise
            # Drop the frames' locals now: Arrow and onnxruntime objects kept alive by the
            # traceback would otherwise be destroyed during interpreter shutdown, after their
            # thread pools, which can abort the process.
            traceback.clear_frames(exc.__traceback__)
            lines = str(exc).splitlines() or [type(exc).__name__]
            err.print(f"[bold red]error:[/] {lines[0]}", highlight=False, markup=True,
                      soft_wrap=True)
            for line in lines[1:]:
                err.print(line, highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _state["debug"]:
                raise
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} "
                      f"(run with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """portanet: Keras → ONNX with a parity gate, and fast TensorFlow-free inference."""
    if debug:
        _state["debug"] = True
    logger = logging.getLogger("portanet")
    if not logger.handlers:
        logger.addHandler(_WarningLine())
        logger.propagate = False
    logger.setLevel(logging.INFO if _state["debug"] else logging.WARNING)


class _WarningLine(logging.Handler):
    """portanet's log warnings as one yellow line on stderr (info only with --debug)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or _state["debug"]:
            label = "warning" if record.levelno >= logging.WARNING else "info"
            err.print(Text.assemble((f"{label}: ", "bold yellow"), record.getMessage()))


@app.command()
@_guarded
def train(
    data: Annotated[Optional[Path], typer.Option(help="Pima-style CSV (default: bundled).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for the split, weights and shuffling.")] = 7,
    output: Annotated[Path, typer.Option(help="Where to save the .h5 model.")] = Path(
        "models/pima_mlp.h5"),
) -> None:
    """Train the reference Pima network and save it as .h5."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from portanet.train import train_pima

    with Progress(TextColumn("training"), BarColumn(), TextColumn("epoch {task.completed}/"
                  "{task.total}"), TextColumn("{task.fields[loss]}"), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("train", total=epochs, loss="")

        def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
            loss = f"loss {logs.get('loss', 0):.4f} val_loss {logs.get('val_loss', 0):.4f}"
            progress.update(task, completed=epoch, loss=loss)

        result = train_pima(output, data=data, epochs=epochs, seed=seed, on_epoch=on_epoch)
        progress.update(task, total=result.epochs_run, completed=result.epochs_run)
    table = Table(title=f"{result.path} (seed {seed}, {result.epochs_run} epochs, best "
                        f"weights kept)")
    for column in ("split", "rows", "accuracy", "ROC AUC", "loss"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in ("validation", "test"):
        m = result.metrics[split]
        table.add_row(split, str(m["rows"]), f"{m['accuracy']:.3f}", f"{m['roc_auc']:.3f}",
                      f"{m['loss']:.4f}")
    out.print(table)


def _parity_table(report: Any, title: str) -> Table:
    table = Table(title=title)
    for column in ("output", "elements", "max abs", "mean abs", "max rel", "flips", "result"):
        table.add_column(column, justify="left" if column in ("output", "result") else "right")
    for o in report.outputs:
        flips = f"{o.flips}/{o.decisions}" if o.decisions is not None else "-"
        table.add_row(o.name, str(o.elements), f"{o.max_abs:.3g}", f"{o.mean_abs:.3g}",
                      f"{o.max_rel:.3g}", flips,
                      "[green]pass[/]" if o.passed else "[red]FAIL[/]")
    table.caption = f"inputs: {report.inputs_from}"
    return table


def _layerwise_table(layerwise: Any, title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "layer", "class", "ONNX tensor", "max abs", "max rel", "out of tol",
                   "result"):
        table.add_column(column, justify="right" if column in (
            "#", "max abs", "max rel", "out of tol") else "left")
    first = layerwise.first_failure
    for row in layerwise.rows:
        name = escape(row.layer) + (f" [dim](+ fused {escape(', '.join(row.fused))})[/]"
                                    if row.fused else "")
        verdict = "[green]pass[/]" if row.passed else (
            "[bold red]FAIL ← first[/]" if row is first else "[red]FAIL[/]")
        table.add_row(str(row.index), name, escape(row.class_name), escape(row.tensor),
                      f"{row.result.max_abs:.3g}", f"{row.result.max_rel:.3g}",
                      f"{row.result.violations}/{row.result.elements}", verdict)
    table.caption = layerwise.summary()
    return table


def _print_reports(report: Any, title: str) -> None:
    out.print(_parity_table(report, title))
    if report.layerwise is not None:
        out.print(_layerwise_table(report.layerwise, "layerwise: Keras layer vs ONNX tensor "
                                   "(graph order)"))


def _names(values: Optional[list[str]]) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


@app.command()
@_guarded
def export(
    source: Annotated[Path, typer.Argument(help="Keras .h5, .keras or SavedModel directory.")],
    output: Annotated[Optional[Path], typer.Option(help="ONNX path (default: SOURCE.onnx).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset to write.")] = 17,
    data: Annotated[Optional[Path], typer.Option(
        help="Rows/arrays for the gate (CSV, Parquet, JSONL, NPY, NPZ).")] = None,
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-5,
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-4,
    verify: Annotated[bool, typer.Option("--verify/--no-verify",
                                         help="Run the parity gate (default) or skip it.")] = True,
    feature_names: Annotated[Optional[str], typer.Option(
        help="Comma-separated column names of a tabular model's input.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write the parity report JSON.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Fix the batch dimension to N (default: dynamic).")] = None,
    inputs_as_nchw: Annotated[Optional[list[str]], typer.Option(
        "--inputs-as-nchw", metavar="NAME",
        help="Image input the ONNX graph takes channels-first (repeat or comma-separate).")] = None,
    layerwise: Annotated[bool, typer.Option(
        "--layerwise", help="Also compare every Keras layer with its ONNX tensor.")] = False,
    allow_unsafe: Annotated[bool, typer.Option(
        "--allow-unsafe", help="Load Lambda/custom layers (runs the file's code: trust it!).")
    ] = False,
) -> None:
    """Convert a Keras model to ONNX; the file is written only if Keras and ONNX agree."""
    from portanet.errors import ParityError
    from portanet.export import export_model

    names = [n.strip() for n in feature_names.split(",")] if feature_names else None
    try:
        result = export_model(source, output, opset=opset, data=data, atol=atol, rtol=rtol,
                              verify=verify, feature_names=names, batch_size=batch_size,
                              inputs_as_nchw=_names(inputs_as_nchw) or None, layerwise=layerwise,
                              allow_unsafe=allow_unsafe)
    except ParityError as exc:
        if exc.report is not None:
            _print_reports(exc.report, "parity gate: Keras vs ONNX")
            _write_report(report, exc.report)
        raise
    if result.report is not None:
        _print_reports(result.report, "parity gate: Keras vs ONNX")
        _write_report(report, result.report)
    else:
        err.print("[yellow]warning:[/] parity gate skipped (--no-verify): the ONNX file is not "
                  "proven to match Keras")
    out.print(f"wrote {result.path} (opset {result.opset}, {result.seconds:.1f} s, loaded with "
              f"{result.loaded.loader})", highlight=False)


def _write_report(path: Optional[Path], report: Any) -> None:
    if path is not None:
        from portanet.atomic import write_bytes

        write_bytes(path, json.dumps(report.to_dict(), indent=2).encode() + b"\n")


@app.command(name="verify")
@_guarded
def verify_command(
    source: Annotated[Path, typer.Argument(help="Keras model file.")],
    onnx_file: Annotated[Path, typer.Argument(metavar="ONNX", help="ONNX model file.")],
    data: Annotated[Optional[Path], typer.Option(help="Rows/arrays to compare on.")] = None,
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-5,
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-4,
    layerwise: Annotated[bool, typer.Option(
        "--layerwise", help="Compare every Keras layer with its ONNX tensor (automatic when "
                            "the outputs differ).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    allow_unsafe: Annotated[bool, typer.Option(
        "--allow-unsafe", help="Load Lambda/custom layers (runs the file's code: trust it!).")
    ] = False,
) -> None:
    """Compare a Keras model with an ONNX model on the same inputs (exit 1 if they differ)."""
    from portanet.parity import verify

    report = verify(source, onnx_file, data=data, atol=atol, rtol=rtol, layerwise=layerwise,
                    allow_unsafe=allow_unsafe)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print_reports(report, f"{source.name} vs {onnx_file.name}")
    if not report:
        from portanet.errors import ParityError

        raise ParityError(f"{onnx_file}: {report.failure_message()}", report)


@app.command()
@_guarded
def infer(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    input_path: Annotated[str, typer.Argument(
        metavar="INPUT", help="CSV, Parquet, JSONL, JSON or NPY file; - for stdin.")],
    output: Annotated[Optional[Path], typer.Option(
        help="Predictions file (.csv, .parquet, .jsonl, .npy); default CSV on stdout.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per chunk.")] = 65536,
    keep_columns: Annotated[Optional[str], typer.Option(
        help="Comma-separated input columns to copy into the output (e.g. an id).")] = None,
    provider: Annotated[str, typer.Option(help="auto, cpu, cuda or tensorrt.")] = "auto",
    require_provider: Annotated[bool, typer.Option(
        "--require-provider", help="Fail unless the asked provider is really active.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime threads (default: the CPUs this process may use).")] = None,
    allow_nan: Annotated[bool, typer.Option(
        "--allow-nan", help="Pass NaN/Inf/empty values to the model instead of refusing.")] = False,
    stdin_format: Annotated[str, typer.Option(help="Format of - (stdin): csv or jsonl.")] = "csv",
    sha256: Annotated[Optional[str], typer.Option(
        help="Refuse the model unless its sha256 is this.")] = None,
) -> None:
    """Run an ONNX model over a file of rows and write predictions."""
    from portanet.errors import InputError
    from portanet.infer import infer_file
    from portanet.runtime import load

    if stdin_format not in ("csv", "jsonl"):
        raise InputError(f"--stdin-format: expected csv or jsonl, got {stdin_format!r}")
    keep = [c.strip() for c in keep_columns.split(",") if c.strip()] if keep_columns else []
    runtime = load(model, providers=provider, strict=require_provider, threads=threads,
                   sha256=sha256)
    with _row_progress() as on_batch:
        result = infer_file(runtime, input_path, output, batch_size=batch_size,
                            keep_columns=keep, allow_nan=allow_nan, stdin_format=stdin_format,
                            on_batch=on_batch)
    if output is not None:
        rate = result.rows / result.seconds if result.seconds else 0.0
        err.print(f"wrote {result.rows} predictions to {output} ({result.seconds:.2f} s, "
                  f"{rate:,.0f} rows/s, {runtime.providers[0]})", highlight=False)


@contextlib.contextmanager
def _row_progress() -> Iterator[Callable[[int], None] | None]:
    """A rows + rows/s progress bar on stderr when it is a terminal; silent otherwise."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.completed:,} rows"),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("infer", total=None, rate="")
        started = time.perf_counter()

        def on_batch(rows: int) -> None:
            progress.advance(task, rows)
            done = progress.tasks[0].completed
            elapsed = time.perf_counter() - started
            progress.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed else "")

        yield on_batch


@app.command()
@_guarded
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show which onnxruntime is installed, its providers, GPUs and CPUs, and any conflict."""
    from portanet.doctor import environment_report

    report = environment_report()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        for key, value in report.items():
            if key != "problems":
                out.print(Text.assemble((f"{key}: ", "bold"), str(value)))
        for problem in report["problems"]:
            err.print(Text.assemble(("problem: ", "bold yellow"), problem))
        if not report["problems"]:
            out.print("no problems found")


@app.command()
@_guarded
def inspect(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sha256: Annotated[Optional[str], typer.Option(
        help="Refuse the file unless its sha256 is this.")] = None,
) -> None:
    """Show an ONNX model's inputs, outputs, opset, checksums and portanet metadata."""
    from portanet.inspection import describe

    info = describe(model, sha256=sha256)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    table = Table(title=f"{model}")
    for column in ("kind", "name", "shape", "dtype"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            table.add_row(kind[:-1], t["name"], str(t["shape"]), t["dtype"])
    out.print(table)
    for key in ("opset", "producer", "sha256", "source_sha256", "providers"):
        out.print(Text.assemble((f"{key}: ", "bold"), str(info[key])))
    for key, value in info["metadata"].items():
        text = value if isinstance(value, str) else json.dumps(value)
        out.print(Text.assemble((f"{key}: ", "bold"), text), soft_wrap=True)


from portanet._cli_optimize import register as _register_optimize
_register_optimize(app, _guarded)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
