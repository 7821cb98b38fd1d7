"""``portanet infer``: predictions for files of rows, arrays or images, in this process
(runtime side only: no TensorFlow) or on a Ray cluster (``--engine ray``, the ``[ray]`` extra,
imported only then)."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from portanet.cli.app import app, err, guarded, print_error
from portanet.cli.options import (
    AllowNan,
    ChannelOrderOption,
    ImageRange,
    OnnxModel,
    Provider,
    RequireProvider,
    Sha256,
    StdinFormat,
    Threads,
    choice_value,
    providers_arg,
    split_names,
)
from portanet.errors import InputError
from portanet.tables.options import LOCAL_ROWS_PER_BATCH, RAY_ROWS_PER_BATCH, InferOptions


class Engine(str, Enum):
    """Where ``infer`` runs."""

    local = "local"
    ray = "ray"


class OnError(str, Enum):
    """What infer does with a row holding a bad value."""

    fail = "fail"
    skip = "skip"


class OutputFormat(str, Enum):
    """The files the Ray engine writes into its output folder."""

    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"


def parse_workers(text: str | None) -> int | tuple[int, int] | None:
    """``N`` or ``MIN,MAX`` as given to ``--workers``."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise InputError(f"--workers: expected N or MIN,MAX (positive integers), got {text!r}")
    if len(parts) == 1:
        return int(parts[0])
    return int(parts[0]), int(parts[1])


@app.command(
    epilog="Example: portanet infer model.onnx rows.csv --output predictions.parquet --mkdir"
)
@guarded
def infer(
    model: OnnxModel,
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            show_default=False,
            help="CSV, TSV, Parquet, JSONL, JSON, NPY or NPZ file; - for stdin; or images: a "
            "folder, a glob such as 'photos/*.jpg', or image files (--engine ray: Parquet, CSV "
            "or JSONL files, folders, globs or URIs).",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            help="Predictions file (.csv, .parquet, .jsonl, .npy; default CSV on stdout); a folder "
            "with --engine ray."
        ),
    ] = None,
    rows_per_batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Most rows read, predicted and written at a time (default "
            f"{LOCAL_ROWS_PER_BATCH}, fewer for heavy rows: about 16 MiB of input per "
            f"batch; {RAY_ROWS_PER_BATCH} with --engine ray).",
        ),
    ] = None,
    keep_columns: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-columns",
            metavar="NAME[=NEW]",
            help="Input columns to copy into the output, e.g. an id (repeat or comma-separate); "
            "NAME=NEW renames one, e.g. label=true_label.",
        ),
    ] = None,
    positional_columns: Annotated[
        bool,
        typer.Option(
            "--positional-columns",
            help="The model has no feature names: take the input's named columns in file order.",
        ),
    ] = False,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            min=1,
            help="Write the K best classes (label, probability, label_2, ...) "
            "instead of every class's probability.",
        ),
    ] = None,
    image_range: ImageRange = None,
    channel_order: ChannelOrderOption = None,
    array_range: Annotated[
        str | None,
        typer.Option(
            "--array-range",
            metavar="LOW..HIGH",
            help="Arrays (NPY/NPZ/JSON) given to an image input hold raw pixels in this range, "
            "e.g. 0..255: scale them as image files are (else values outside the model's "
            "recorded range are refused).",
        ),
    ] = None,
    mkdir: Annotated[
        bool, typer.Option("--mkdir", help="Create the output's folder if it does not exist.")
    ] = False,
    provider: Provider = None,
    require_provider: RequireProvider = False,
    threads: Threads = None,
    allow_nan: AllowNan = False,
    stdin_format: Annotated[
        StdinFormat, typer.Option(help="Format of - (stdin).")
    ] = StdinFormat.csv,
    sha256: Sha256 = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON summary (rows, seconds, rows/s, output) on stdout; needs --output.",
        ),
    ] = False,
    engine: Annotated[
        Engine, typer.Option(help="local (this process) or ray (a Ray cluster).")
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray: auto, HOST:PORT or ray://HOST:PORT (default: a local cluster for this run)."
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(metavar="N|MIN,MAX", help="Ray: N actors, or an autoscaling pool MIN,MAX."),
    ] = None,
    cpus_per_worker: Annotated[
        float | None, typer.Option(min=0.01, help="Ray: CPUs per actor.")
    ] = None,
    on_error: Annotated[
        OnError,
        typer.Option(
            help="fail on a bad value, or skip bad rows (and undecodable images), listed with "
            "their reasons in OUTPUT_STEM.rejected.csv (--engine ray: OUTPUT.rejected/).",
        ),
    ] = OnError.fail,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="Ray: the files written into the --output folder."),
    ] = OutputFormat.parquet,
) -> None:
    """Run an ONNX model over files of rows, arrays or images and write predictions."""
    from portanet.cli.app import state

    providers = providers_arg(provider)
    options = InferOptions(
        engine=engine.value,
        rows_per_batch=rows_per_batch,
        keep_columns=tuple(split_names(keep_columns)),
        allow_nan=allow_nan,
        on_error=on_error.value,
        stdin_format=stdin_format.value,
        positional=positional_columns,
        top_k=top_k,
        image_range=image_range,
        array_range=array_range,
        channel_order=choice_value(channel_order),
        make_dirs=mkdir,
        address=address,
        workers=parse_workers(workers),
        cpus_per_worker=cpus_per_worker,
        output_format=output_format.value,
        providers="cpu" if providers == "auto" else providers,
        threads=threads,
        sha256=sha256,
        debug=bool(state["debug"]),
    )
    if engine is Engine.ray:
        _infer_on_ray(model, inputs, output, options)
        return
    from portanet.runtime import load
    from portanet.tables.infer import infer_file

    if as_json and output is None:
        raise InputError(
            "--json: expected --output (the predictions would share stdout with "
            "the summary), got none"
        )
    runtime = load(
        model, providers=providers, strict=require_provider, threads=threads, sha256=sha256
    )
    with _row_progress() as (on_total, on_batch):
        result = infer_file(
            runtime,
            inputs if len(inputs) > 1 else inputs[0],
            output,
            options,
            on_batch=on_batch,
            on_total=on_total,
        )
    if as_json:
        summary = {**result.to_dict(), "model": str(model), "provider": runtime.providers[0]}
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    if output is not None:
        rate = result.rows / result.seconds if result.seconds else 0.0
        files = f" from {result.files} files" if result.files > 1 else ""
        err.print(
            f"wrote {result.rows} predictions{files} to {output} ({result.seconds:.2f} s, "
            f"{rate:,.0f} rows/s, {runtime.providers[0]})",
            highlight=False,
            soft_wrap=True,
        )
    if result.rejected:
        err.print(
            f"skipped {result.rejected} bad rows or files: listed with their reasons in "
            f"{result.rejected_file}",
            highlight=False,
            soft_wrap=True,
        )
    if result.skipped_files:
        err.print(
            f"skipped {result.skipped_files} files that are not images",
            highlight=False,
            soft_wrap=True,
        )


def _infer_on_ray(
    model: Path, inputs: list[str], output: Path | None, options: InferOptions
) -> None:
    if importlib.util.find_spec("ray") is None:
        raise InputError(
            "--engine ray: expected Ray to be installed, got no 'ray' module; "
            "install it with pip install 'portanet[ray]'"
        )
    if output is None:
        raise InputError(
            "--engine ray writes a folder of files: expected --output FOLDER, got none"
        )
    if "-" in inputs:
        raise InputError(
            "--engine ray reads files, folders or URIs, got - (stdin); use the "
            "local engine for stdin"
        )
    from portanet.scale import infer_ray
    from portanet.scale.signals import Interrupted

    try:
        result = infer_ray(model, inputs, str(output), options)
    except Interrupted as exc:
        # Ray's native threads may abort the interpreter's teardown after a signal (seen:
        # SIGABRT when SIGTERM lands while ray.init connects): say why, then leave at once.
        with contextlib.suppress(Exception):
            print_error(str(exc))
            sys.stderr.flush()
            sys.stdout.flush()
        os._exit(exc.exit_code)
    finally:
        # Everything Ray and the run left is garbage at exit: frozen, the interpreter's last
        # collection skips it (1.2 s of a 1,000-row run's teardown measured, 0.03 s after).
        gc.freeze()
    rate = result.rows / result.seconds if result.seconds else 0.0
    pool = result.workers
    size = (
        f"{pool.min_size}" if pool.min_size == pool.max_size else f"{pool.min_size}-{pool.max_size}"
    )
    err.print(
        f"wrote {result.rows} predictions from {result.files} files to {result.output} "
        f"({result.seconds:.2f} s, {rate:,.0f} rows/s, {size} workers x {pool.cpus:g} "
        f"CPU)",
        highlight=False,
        soft_wrap=True,
    )
    if result.rejected:
        err.print(
            f"skipped {result.rejected} rows with bad values: written with their reasons "
            f"to {result.rejected_dir}",
            highlight=False,
            soft_wrap=True,
        )


@contextlib.contextmanager
def _row_progress() -> Iterator[
    tuple[Callable[[int | None], None] | None, Callable[[int], None] | None]
]:
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

    with Progress(
        SpinnerColumn(),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,} rows"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
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
