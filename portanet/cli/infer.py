"""``portanet infer``: predictions for a file of rows, arrays or images (runtime side only:
no TensorFlow)."""

from __future__ import annotations

import contextlib
import json
import sys
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
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT", show_default=False,
        help="CSV, TSV, Parquet, JSONL, JSON, NPY or NPZ file; - for stdin; or images: a "
             "folder, a glob such as 'photos/*.jpg', or image files.")],
    output: Annotated[Optional[Path], typer.Option(
        help="Predictions file (.csv, .parquet, .jsonl, .npy); default CSV on stdout.")] = None,
    rows_per_batch: Annotated[int, typer.Option(
        min=1, help="Most rows read, predicted and written at a time (fewer for heavy rows: "
                    "about 16 MiB of input per batch).")] = 65536,
    keep_columns: Annotated[Optional[list[str]], typer.Option(
        "--keep-columns", metavar="NAME[=NEW]",
        help="Input columns to copy into the output, e.g. an id (repeat or comma-separate); "
             "NAME=NEW renames one, e.g. label=true_label.")] = None,
    positional_columns: Annotated[bool, typer.Option(
        "--positional-columns",
        help="The model has no feature names: take the input's named columns in file order.")
    ] = False,
    top_k: Annotated[Optional[int], typer.Option(
        "--top-k", min=1, help="Write the K best classes (label, probability, label_2, ...) "
                               "instead of every class's probability.")] = None,
    image_range: Annotated[Optional[str], typer.Option(
        "--image-range", metavar="LOW..HIGH",
        help="Pixel value range the model takes (-1..1, 0..1, 0..255, tf, torch, caffe); "
             "overrides what was recorded at export.")] = None,
    channel_order: Annotated[Optional[str], typer.Option(
        "--channel-order", metavar="rgb|bgr",
        help="Channel order of image inputs; overrides what was recorded at export.")] = None,
    mkdir: Annotated[bool, typer.Option(
        "--mkdir", help="Create the output's folder if it does not exist.")] = False,
    provider: Provider = None,
    require_provider: RequireProvider = False,
    threads: Threads = None,
    allow_nan: AllowNan = False,
    stdin_format: Annotated[StdinFormat, typer.Option(help="Format of - (stdin).")
                            ] = StdinFormat.csv,
    sha256: Sha256 = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON summary (rows, seconds, rows/s, output) on stdout; "
                       "needs --output.")] = False,
) -> None:
    """Run an ONNX model over a file of rows, arrays or images and write predictions."""
    from portanet.errors import InputError
    from portanet.runtime import load
    from portanet.tables.infer import infer_file

    if as_json and output is None:
        raise InputError("--json: expected --output (the predictions would share stdout with "
                         "the summary), got none")
    runtime = load(model, providers=providers_arg(provider), strict=require_provider,
                   threads=threads, sha256=sha256)
    with _row_progress() as (on_total, on_batch):
        result = infer_file(runtime, inputs if len(inputs) > 1 else inputs[0], output,
                            batch_size=rows_per_batch, keep_columns=split_names(keep_columns),
                            allow_nan=allow_nan, stdin_format=stdin_format.value,
                            on_batch=on_batch, on_total=on_total,
                            positional=positional_columns, top_k=top_k,
                            image_range=image_range, channel_order=channel_order,
                            make_dirs=mkdir)
    if as_json:
        summary = {**result.to_dict(), "model": str(model), "provider": runtime.providers[0]}
        sys.stdout.write(json.dumps(summary) + "\n")
    elif output is not None:
        err.print(f"wrote {result.rows} predictions to {output} ({result.seconds:.2f} s, "
                  f"{result.rows_per_second:,.0f} rows/s, {runtime.providers[0]})",
                  highlight=False)


@contextlib.contextmanager
def _row_progress() -> Iterator[tuple[Callable[[int | None], None] | None,
                                      Callable[[int], None] | None]]:
    """A progress bar on stderr when it is a terminal (rows, rows/s, and a percentage when the
    input's size is known); silent otherwise."""
    if not err.is_terminal:
        yield None, None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.completed:,} rows"), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("infer", total=None, rate="")
        started = time.perf_counter()

        def on_total(total: int | None) -> None:
            progress.update(task, total=total)

        def on_batch(rows: int) -> None:
            progress.advance(task, rows)
            done = progress.tasks[0].completed
            elapsed = time.perf_counter() - started
            progress.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed else "")

        yield on_total, on_batch
