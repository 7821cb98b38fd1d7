"""``portanet infer``: predictions for a file of rows (runtime side only: no TensorFlow)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from portanet.cli.app import app, err, guarded
from portanet.cli.options import (
    AllowNan,
    OnnxModel,
    Provider,
    RequireProvider,
    Sha256,
    StdinFormat,
    Threads,
    providers_arg,
    split_names,
)


@app.command()
@guarded
def infer(
    model: OnnxModel,
    input_path: Annotated[str, typer.Argument(
        metavar="INPUT", show_default=False,
        help="CSV, TSV, Parquet, JSONL, JSON or NPY file; - for stdin.")],
    output: Annotated[Optional[Path], typer.Option(
        help="Predictions file (.csv, .parquet, .jsonl, .npy); default CSV on stdout.")] = None,
    rows_per_batch: Annotated[int, typer.Option(
        min=1, help="Rows read, predicted and written at a time.")] = 65536,
    keep_columns: Annotated[Optional[list[str]], typer.Option(
        "--keep-columns", metavar="NAME",
        help="Input columns to copy into the output, e.g. an id (repeat or comma-separate).")
    ] = None,
    provider: Provider = None,
    require_provider: RequireProvider = False,
    threads: Threads = None,
    allow_nan: AllowNan = False,
    stdin_format: Annotated[StdinFormat, typer.Option(help="Format of - (stdin).")
                            ] = StdinFormat.csv,
    sha256: Sha256 = None,
) -> None:
    """Run an ONNX model over a file of rows and write predictions."""
    from portanet.runtime import load
    from portanet.tables.infer import infer_file

    runtime = load(model, providers=providers_arg(provider), strict=require_provider,
                   threads=threads, sha256=sha256)
    with _row_progress() as on_batch:
        result = infer_file(runtime, input_path, output, batch_size=rows_per_batch,
                            keep_columns=split_names(keep_columns), allow_nan=allow_nan,
                            stdin_format=stdin_format.value, on_batch=on_batch)
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
