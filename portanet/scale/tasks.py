"""The Ray engine's default path: one plain Ray task per input file, which reads it, predicts it
and writes its part of the output folder, and returns its row counts.

Without Ray Data this path costs a run no ``ray.data`` import (about a second in the driver and
again in every worker), no counting actor, no object-store hop between reading and predicting,
and no streaming executor; a worker process keeps the model it loaded for the next file. The
reading is :func:`portanet.scale.sources.read_file` (the local engine's readers and value
policy), the prediction the :class:`~portanet.scale.predictor.Predictor` and the writing the
local engine's writer (:mod:`portanet.tables.writers`), so a part file holds exactly what the
local engine would write for that file.

A task that fails raises its :class:`~portanet.errors.PortanetError`, which Ray hands back as
the cause of its ``RayTaskError``; a task whose worker dies is retried by Ray and rewrites the
same part file (written under a temporary name and renamed, on a local disk), so no row is
counted or written twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portanet.scale.predictor import cached_predictor
from portanet.scale.sources import InputFile, read_file
from portanet.tables.files import filesystem
from portanet.tables.pipeline import prefetch
from portanet.tables.types import Columns
from portanet.tables.writers import ColumnWriter

#: Suffix of the part files by output format.
SUFFIXES = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


def part_name(index: int, fmt: str) -> str:
    """The output file of input file ``index``: ``part-00000.parquet`` ..."""
    return f"part-{index:05d}.{SUFFIXES[fmt]}"


def predict_file(
    index: int,
    source: InputFile,
    columns: Columns,
    rows_per_batch: int,
    allow_nan: bool,
    model: tuple[Any, ...],
    settings: dict[str, Any],
    folder: str,
    fmt: str,
) -> tuple[int, int]:
    """Read, predict and write one input file into ``folder``; (rows predicted, rejected)."""
    predictor = cached_predictor(model, settings)
    fs, inner, _ = filesystem(folder)
    final = f"{inner.rstrip('/')}/{part_name(index, fmt)}"
    partial = f"{final}.partial"
    predicted = rejected = 0
    with fs.open_output_stream(partial) as stream:
        writer = ColumnWriter(fmt, stream)
        # The next block is read while this one is predicted and written (as locally).
        blocks = read_file(index, source, columns, rows_per_batch, None, allow_nan)
        for block in prefetch(blocks):
            table = predictor(block)
            predicted += table.num_rows
            rejected += block.num_rows - table.num_rows
            writer.write({n: table.column(n) for n in table.column_names})
        writer.close()
    if predicted:
        fs.move(partial, final)
    else:  # no row to write: no part file (as Ray Data writes none for an empty block)
        fs.delete_file(partial)
    return predicted, rejected


def run_tasks(
    files: Sequence[InputFile],
    columns: Columns,
    rows_per_batch: int,
    allow_nan: bool,
    model_ref: Any,
    settings: dict[str, Any],
    folder: str,
    fmt: str,
) -> tuple[int, int]:
    """One task per file on the connected cluster; the summed counts. A failure is raised as
    soon as one task fails: the caller leaves the session, which ends the job's tasks (Ray
    stops a job's workers when its driver disconnects), and then removes ``folder``. (Not
    ``ray.cancel``: a forced cancel racing a task's completion aborts Ray's core worker.)"""
    import ray

    fs, inner, _ = filesystem(folder)
    fs.create_dir(inner, recursive=True)
    remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(predict_file)
    pending = [
        remote.remote(i, f, columns, rows_per_batch, allow_nan, (model_ref,), settings, folder, fmt)
        for i, f in enumerate(files)
    ]
    predicted = rejected = 0
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        rows, bad = ray.get(done[0])
        predicted += rows
        rejected += bad
    return predicted, rejected


__all__ = ["part_name", "predict_file", "run_tasks"]
