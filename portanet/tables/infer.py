"""Batch inference over files: stream rows in, predictions out (runtime side, no TensorFlow).

One entry point, :func:`infer_file`, for every model: a table (CSV/TSV, Parquet, JSONL/JSON,
NPY) for a model with one fixed-width 2-D input; arrays of any rank (NPY, NPZ by input name,
JSONL/Parquet with nested lists) for others; images (a folder, a glob, files) for a model with an
image input. The output columns are described in :func:`prediction_columns`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.runtime import Model, load
from portanet.runtime.inputs import check_vocabulary
from portanet.runtime.providers import usable_cpus
from portanet.schema import MULTICLASS_CLASSIFIER, parse_value_range
from portanet.tables import images as img
from portanet.tables.outputs import (
    check_clash,
    check_output,
    disk_full,
    kept_names,
    prediction_columns,
)
from portanet.tables.pipeline import prefetch
from portanet.tables.readers import input_format, iter_batches, iter_tensor_batches
from portanet.tables.tensors import rows_for_bytes
from portanet.tables.types import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, Batch, Columns
from portanet.tables.writers import open_writer, output_format

__all__ = ["InferResult", "infer_file", "prediction_columns"]


@dataclass
class InferResult:
    """What a batch inference run did."""

    rows: int
    seconds: float
    output: Path | None

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run (reading, predicting, writing)."""
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: rows, seconds, rows per second, output path."""
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "rows_per_second": round(self.rows_per_second, 1),
            "output": str(self.output) if self.output else None,
        }


def _sources(source: Any) -> list[str | os.PathLike[str]]:
    if isinstance(source, (str, os.PathLike)):
        return [source]
    sources = list(source)
    if not sources:
        raise InputError("input: expected a file, folder or glob pattern, got none")
    return sources


def _is_table_model(runtime: Model) -> bool:
    specs = runtime.schema.inputs
    return len(specs) == 1 and specs[0].rank == 2 and isinstance(specs[0].shape[1], int)


def infer_file(
    model: Model | str | os.PathLike[str],
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_ROWS,
    keep_columns: Sequence[str] | Mapping[str, str] = (),
    allow_nan: bool = False,
    stdin_format: str = "csv",
    on_batch: Callable[[int], None] | None = None,
    on_total: Callable[[int | None], None] | None = None,
    positional: bool = False,
    top_k: int | None = None,
    image_range: str | None = None,
    channel_order: str | None = None,
    make_dirs: bool = False,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> InferResult:
    """Predict every row (sample, image) of ``source`` and write the predictions to ``output``
    (CSV on stdout if None).

    ``source`` is a file (``-`` for stdin), a folder or glob of images, or a list of image files.
    Rows stream through in batches of at most ``batch_size`` rows and about ``max_batch_bytes``
    of input, so memory stays flat. The output file is written atomically: a bad value anywhere
    leaves no partial file. Before any work the output path is checked: not one of the inputs,
    a folder that exists (created only with ``make_dirs``) and may be written.

    ``keep_columns`` copies input columns to the output (``"name=new"`` or a mapping renames
    one); a kept column named like an output column is refused. For a model without feature
    names, named input columns are taken in file order only with ``positional=True``. ``top_k``
    writes the k best classes of a multiclass model. ``image_range`` (``"0..1"``, ``"-1..1"``,
    ``"0..255"``, ``"tf"``, ``"torch"``, ``"caffe"``) and ``channel_order`` override the image
    preprocessing recorded at export. ``on_total`` receives the number of rows when it is known
    before reading (images, NPY, NPZ, Parquet), else ``None``; ``on_batch`` the row count of each
    finished batch (for progress bars).
    """
    started = time.perf_counter()
    runtime = model if isinstance(model, Model) else load(model)
    sources = _sources(source)
    fmt_out = output_format(output)  # an unknown suffix is refused before reading anything
    kept = kept_names(keep_columns)
    if fmt_out == "npy" and kept:
        raise InputError(
            f"{output}: .npy holds numbers only; kept columns need "
            f"a .csv, .parquet or .jsonl output"
        )
    if top_k is not None and top_k < 1:
        raise InputError(f"top k: expected a positive number of classes, got {top_k}")
    if top_k is not None and runtime.schema.task != MULTICLASS_CLASSIFIER:
        raise InputError(
            f"{runtime.path or 'model'}: top k ranks the classes of a multiclass "
            f"classifier, got a model whose task is {runtime.schema.task or 'unknown'}"
        )
    if (image_range or channel_order) and not any(s.rank == 4 for s in runtime.schema.inputs):
        raise InputError(
            f"{runtime.path or 'model'}: an image range or channel order applies to "
            f"an image input (rank 4), got inputs "
            f"{[(s.name, s.shape) for s in runtime.schema.inputs]}"
        )
    if image_range:
        try:  # a typo fails before any work
            parse_value_range(image_range)
        except ValueError as exc:
            raise InputError(f"--image-range: {exc}") from None
    check_output(output, sources, make_dirs=make_dirs, model=runtime.path)
    batches, total, extra = _plan(
        runtime,
        sources,
        kept,
        batch_size=batch_size,
        allow_nan=allow_nan,
        stdin_format=stdin_format,
        positional=positional,
        image_range=image_range,
        channel_order=channel_order,
        max_bytes=max_batch_bytes,
    )
    numeric = fmt_out == "npy"
    if numeric and extra:  # e.g. images: the file column says which input each row is
        raise InputError(
            f"--output {output}: .npy holds numbers only, without the {', '.join(extra)} "
            f"column that says which input each row is; write a .csv, .parquet or .jsonl output"
        )
    produced = list(
        prediction_columns(
            runtime,
            runtime.run(_empty_feeds(runtime), allow_nan=True),
            top_k=top_k,
            numeric=numeric,
        )
    )
    check_clash({**{e: e for e in extra}, **kept}, produced)
    if on_total is not None:
        on_total(total)
    rows = 0
    origin = "<stdin>" if str(sources[0]) == "-" else str(sources[0])
    try:
        with open_writer(output) as writer:
            for batch in prefetch(batches):
                outputs = _predict(runtime, batch, origin)
                table = {e: batch.kept[e] for e in extra}
                table.update({kept[k]: batch.kept[k] for k in kept})
                table.update(prediction_columns(runtime, outputs, top_k=top_k, numeric=numeric))
                writer.write(table)
                rows += batch.rows
                if on_batch is not None:
                    on_batch(batch.rows)
            if rows == 0:  # header only: an empty result with the right columns
                empty = runtime.run(_empty_feeds(runtime), allow_nan=True)
                table = {name: np.array([], dtype=object) for name in [*extra, *kept.values()]}
                table.update(prediction_columns(runtime, empty, top_k=top_k, numeric=numeric))
                writer.write(table)
    except OSError as exc:
        full = disk_full(exc, output)
        if full is None:
            raise
        raise full from exc
    return InferResult(
        rows, time.perf_counter() - started, Path(output) if output and str(output) != "-" else None
    )


def _empty_feeds(runtime: Model) -> dict[str, np.ndarray]:
    return {
        s.name: np.empty(
            (0, *[d if isinstance(d, int) else 1 for d in s.shape[1:]]), dtype=s.numpy_dtype
        )
        for s in runtime.schema.inputs
    }


def _predict(runtime: Model, batch: Batch, origin: str) -> dict[str, np.ndarray]:
    feeds = (
        batch.feeds if batch.feeds is not None else {runtime.schema.inputs[0].name: batch.features}
    )
    for name, size in runtime.schema.vocabulary.items():
        if name in feeds:
            try:
                check_vocabulary(name, feeds[name], size, batch.first_row)
            except InputError as exc:
                raise InputError(f"{origin}: {exc}") from exc
    # The readers have refused NaN/Inf already (naming line and column); skip a recheck.
    return runtime.run(feeds, allow_nan=True)


def _plan(
    runtime: Model,
    sources: list[Any],
    kept: dict[str, str],
    *,
    batch_size: int,
    allow_nan: bool,
    stdin_format: str,
    positional: bool,
    image_range: str | None,
    channel_order: str | None,
    max_bytes: int,
) -> tuple[Iterator[Batch], int | None, list[str]]:
    """The batches to predict, the row count when known, and the columns the reader adds."""
    specs = runtime.schema.inputs
    if img.is_image_source(sources) and any(s.rank == 4 for s in specs):
        override: dict[str, Any] = {}
        if image_range:
            try:
                override.update(parse_value_range(image_range))
            except ValueError as exc:
                raise InputError(f"--image-range: {exc}") from None
        if channel_order:
            if channel_order.lower() not in ("rgb", "bgr"):
                raise InputError(f"channel order: expected rgb or bgr, got {channel_order!r}")
            override["channel_order"] = channel_order.lower()
        origin = str(runtime.path or "model")
        spec, image = img.image_input(specs, runtime.schema.images, override, origin)
        if kept:
            raise InputError(
                f"kept columns {list(kept)}: images have no columns to keep; "
                f"each output row carries the image's file name as 'file'"
            )
        img.pillow()
        files = img.image_paths(sources)
        sample = [d for d in spec.shape[1:] if isinstance(d, int)]
        step = rows_for_bytes(sample, spec.numpy_dtype.itemsize, batch_size, max_bytes)
        threads = min(8, max(1, usable_cpus()))
        return img.image_batches(files, spec, image, step, threads), len(files), ["file"]
    if len(sources) != 1:
        raise InputError(
            f"input: expected one file (or image files), got {len(sources)}: "
            f"{[str(s) for s in sources][:5]}"
        )
    path = sources[0]
    fmt = input_format(path, stdin_format)
    if _is_table_model(runtime) and fmt != "npz":
        spec = specs[0]
        columns = Columns(
            runtime.feature_names,
            int(spec.shape[1]),
            tuple(kept),
            spec.numpy_dtype,
            positional=positional,
        )
        batches = iter_batches(
            path, columns, batch_rows=batch_size, allow_nan=allow_nan, stdin_format=stdin_format
        )
    else:
        batches = iter_tensor_batches(
            path,
            specs,
            keep=tuple(kept),
            batch_rows=batch_size,
            allow_nan=allow_nan,
            stdin_format=stdin_format,
            max_bytes=max_bytes,
        )
    return batches, _known_rows(path, fmt), []


def _known_rows(path: Any, fmt: str) -> int | None:
    """Rows of a file whose header says how many (for a progress percentage), else None."""
    if str(path) == "-":
        return None
    try:
        if fmt == "npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return int(array.shape[0]) if array.ndim > 1 else 1
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # an unreadable file is reported by its reader, with the reason
        return None
    return None
