"""Batch inference over files: stream rows in, predictions out (runtime side, no TensorFlow).

One entry point, :func:`infer_file`, for every model: a table (CSV/TSV, Parquet, JSONL/JSON,
NPY) for a model with one fixed-width 2-D input; arrays of any rank (NPY, NPZ by input name,
JSONL/Parquet with nested lists) for others; images (a folder, a glob, files) for a model with an
image input. The output columns are described in :func:`prediction_columns`.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from portanet._files import atomic_path
from portanet.errors import InputError
from portanet.images import parse_array_range, recipes_of
from portanet.images.decode import pillow
from portanet.runtime import Model, load
from portanet.runtime.inputs import check_vocabulary
from portanet.runtime.providers import usable_cpus
from portanet.schema import MULTICLASS_CLASSIFIER, parse_value_range
from portanet.tables import images as img
from portanet.tables.files import list_inputs
from portanet.tables.options import InferOptions
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
from portanet.tables.types import Batch, Columns, Rejected
from portanet.tables.writers import open_writer, output_format

__all__ = ["InferOptions", "InferResult", "infer_file", "prediction_columns"]


@dataclass
class InferResult:
    """What a batch inference run did."""

    rows: int
    seconds: float
    output: Path | None
    #: Rows (or files) set aside under ``on_error="skip"``, and where they are listed.
    rejected: int = 0
    rejected_file: Path | None = None
    #: Files in image folders that are not images (skipped; hidden files are not counted).
    skipped_files: int = 0
    files: int = 1

    @property
    def rows_per_second(self) -> float:
        """Throughput of the whole run (reading, predicting, writing)."""
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: rows, seconds, rows per second, output path, rejected rows."""
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "rows_per_second": round(self.rows_per_second, 1),
            "output": str(self.output) if self.output else None,
            "files": self.files,
            "rejected": self.rejected,
            "rejected_file": str(self.rejected_file) if self.rejected_file else None,
            "skipped_files": self.skipped_files,
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


def rejected_path(output: str | os.PathLike[str]) -> Path:
    """Where the local engine lists rejected rows: ``preds.csv`` → ``preds.rejected.csv``."""
    target = Path(output)
    return target.with_name(f"{target.stem}.rejected.csv")


def check_options(runtime: Model, options: InferOptions, output: Any) -> None:
    """Refuse, before any work, options that cannot apply to this model or output."""
    if output_format(output) == "npy" and kept_names(options.keep_columns):
        raise InputError(
            f"{output}: .npy holds numbers only; kept columns need "
            f"a .csv, .parquet or .jsonl output"
        )
    if options.top_k is not None and runtime.schema.task != MULTICLASS_CLASSIFIER:
        raise InputError(
            f"{runtime.path or 'model'}: top k ranks the classes of a multiclass "
            f"classifier, got a model whose task is {runtime.schema.task or 'unknown'}"
        )
    if (options.image_range or options.channel_order) and not any(
        s.rank == 4 for s in runtime.schema.inputs
    ):
        raise InputError(
            f"{runtime.path or 'model'}: an image range or channel order applies to "
            f"an image input (rank 4), got inputs "
            f"{[(s.name, s.shape) for s in runtime.schema.inputs]}"
        )
    if options.image_range:
        try:  # a typo fails before any work
            parse_value_range(options.image_range)
        except ValueError as exc:
            raise InputError(f"--image-range: {exc}") from None
    if options.array_range:
        parse_array_range(options.array_range)
    if options.on_error == "skip" and (output is None or str(output) == "-"):
        raise InputError(
            "--on-error skip lists the rejected rows in a file beside the output: "
            "expected --output FILE, got none"
        )


def infer_file(
    model: Model | str | os.PathLike[str],
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    options: InferOptions | None = None,
    *,
    on_batch: Callable[[int], None] | None = None,
    on_total: Callable[[int | None], None] | None = None,
    **changes: Any,
) -> InferResult:
    """Predict every row (sample, image) of ``source`` and write the predictions to ``output``
    (CSV on stdout if None), as ``options`` (:class:`InferOptions`) say.

    ``source`` is a file (``-`` for stdin), several files, a folder or a glob (tables: files of
    one format family read in order into one output; images: image files). Rows stream through
    in batches, so memory stays flat. The output file is written atomically: a bad value
    anywhere leaves no partial file (with ``on_error="skip"`` bad rows are listed with their
    reasons in ``<output stem>.rejected.csv`` instead). Before any work the output path is
    checked: not one of the inputs, a folder that exists (created only with ``make_dirs``).

    ``changes`` are :class:`InferOptions` fields that override ``options`` (e.g.
    ``allow_nan=True``). ``on_total`` receives the number of rows when it is known before
    reading (images, NPY, NPZ, Parquet), else ``None``; ``on_batch`` the row count of each
    finished batch (for progress bars).
    """
    started = time.perf_counter()
    options = (options or InferOptions()).but(**changes) if changes else options or InferOptions()
    runtime = model if isinstance(model, Model) else load(model)
    sources = _sources(source)
    check_options(runtime, options, output)
    kept = kept_names(options.keep_columns)
    check_output(output, sources, make_dirs=options.make_dirs, model=runtime.path)
    plan = _plan(runtime, sources, kept, options)
    pixels = parse_array_range(options.array_range) if options.array_range else None
    recipes = recipes_of(runtime.metadata, runtime.schema.images)
    if not plan.extra and recipes:  # arrays given directly, not image files
        plan.batches = _checked_arrays(plan.batches, recipes, pixels)
    elif pixels is not None:
        raise InputError(
            f"--array-range: applies to arrays given to an image input, got "
            f"{'image files' if plan.extra else 'a model without a recorded image input'}"
        )
    fmt_out = output_format(output)
    numeric = fmt_out == "npy"
    if numeric and plan.extra:  # e.g. images: the file column says which input each row is
        raise InputError(
            f"--output {output}: .npy holds numbers only, without the {', '.join(plan.extra)} "
            f"column that says which input each row is; write a .csv, .parquet or .jsonl output"
        )
    top_k = options.top_k
    produced = list(
        prediction_columns(
            runtime,
            runtime.run(_empty_feeds(runtime), allow_nan=True),
            top_k=top_k,
            numeric=numeric,
        )
    )
    check_clash({**{e: e for e in plan.extra}, **kept}, produced)
    if on_total is not None:
        on_total(plan.total)
    rows = 0
    rejected: list[Rejected] = []
    try:
        with open_writer(output) as writer:
            for origin, batch in prefetch(plan.batches):
                rejected.extend(batch.rejected)
                if batch.rows == 0:
                    continue
                outputs = _predict(runtime, batch, origin)
                table = {e: batch.kept[e] for e in plan.extra}
                table.update({kept[k]: batch.kept[k] for k in kept})
                table.update(prediction_columns(runtime, outputs, top_k=top_k, numeric=numeric))
                writer.write(table)
                rows += batch.rows
                if on_batch is not None:
                    on_batch(batch.rows)
            if rows == 0:  # header only: an empty result with the right columns
                empty = runtime.run(_empty_feeds(runtime), allow_nan=True)
                table = {name: np.array([], dtype=object) for name in [*plan.extra, *kept.values()]}
                table.update(prediction_columns(runtime, empty, top_k=top_k, numeric=numeric))
                writer.write(table)
            listing = _write_rejected(rejected, output) if rejected else None
    except OSError as exc:
        full = disk_full(exc, output)
        if full is None:
            raise
        raise full from exc
    return InferResult(
        rows,
        time.perf_counter() - started,
        Path(output) if output and str(output) != "-" else None,
        len(rejected),
        listing,
        plan.skipped_files,
        plan.files,
    )


def _write_rejected(rejected: Sequence[Rejected], output: Any) -> Path:
    """List the rejected rows (file, line/row/record, number, reason) in a CSV beside the
    output, atomically."""
    target = rejected_path(output)
    with atomic_path(target) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "unit", "number", "reason"])
        for item in rejected:
            writer.writerow([item.file, item.word, item.number, item.reason])
    return target


def _checked_arrays(
    batches: Iterator[tuple[str, Batch]],
    recipes: Mapping[str, Any],
    pixels: tuple[float, float] | None,
) -> Iterator[tuple[str, Batch]]:
    """Arrays given directly to an image input, checked against (or, with ``pixels``, scaled
    to) the recorded value range: :func:`portanet.tables.images.checked_arrays` per file."""
    for origin, batch in batches:
        for checked in img.checked_arrays(iter([batch]), recipes, origin, pixels):
            yield origin, checked


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


@dataclass
class _Plan:
    batches: Iterator[tuple[str, Batch]]  # (the file a batch comes from, the batch)
    total: int | None  # rows, when known before reading
    extra: list[str]  # columns the reader adds (``file`` for images)
    files: int = 1
    skipped_files: int = 0


def _plan(runtime: Model, sources: list[Any], kept: dict[str, str], options: InferOptions) -> _Plan:
    """The batches to predict, the row count when known, and the columns the reader adds."""
    specs = runtime.schema.inputs
    batch_size = options.batch_rows
    if img.is_image_source(sources) and any(s.rank == 4 for s in specs):
        override: dict[str, Any] = {}
        if options.image_range:
            try:
                override.update(parse_value_range(options.image_range))
            except ValueError as exc:
                raise InputError(f"--image-range: {exc}") from None
        if options.channel_order:
            if options.channel_order.lower() not in ("rgb", "bgr"):
                raise InputError(
                    f"channel order: expected rgb or bgr, got {options.channel_order!r}"
                )
            override["channel_order"] = options.channel_order.lower()
        origin = str(runtime.path or "model")
        recipes = recipes_of(runtime.metadata, runtime.schema.images)
        spec, image = img.image_input(specs, recipes, override, origin)
        if kept:
            raise InputError(
                f"kept columns {list(kept)}: images have no columns to keep; "
                f"each output row carries the image's file name as 'file'"
            )
        pillow()
        files, others = img.image_listing(sources)
        sample = [d for d in spec.shape[1:] if isinstance(d, int)]
        step = rows_for_bytes(
            sample, spec.numpy_dtype.itemsize, batch_size, options.max_batch_bytes
        )
        threads = min(8, max(1, usable_cpus()))
        batches = img.image_batches(
            files, spec, image, step, threads, skip=options.on_error == "skip"
        )
        named = ((str(files[b.first_row][0]) if files else "", b) for b in batches)
        return _Plan(named, len(files), ["file"], len(files), others)
    if len(sources) == 1 and str(sources[0]) == "-":
        paths = ["-"]
    else:
        paths = [f.path for f in list_inputs([str(s) for s in sources])]
    fmts = [input_format(p, options.stdin_format) for p in paths]
    table = _is_table_model(runtime) and "npz" not in fmts
    if not table and options.on_error == "skip":
        raise InputError(
            "--on-error skip sets aside rows of tables and undecodable images; arrays "
            f"for the inputs {[(s.name, s.shape) for s in specs]} are checked whole: "
            "expected --on-error fail"
        )
    known = [_known_rows(p, f) for p, f in zip(paths, fmts, strict=True)]
    total = None if None in known else sum(k or 0 for k in known)
    return _Plan(_chain(runtime, paths, kept, options, table), total, [], len(paths))


def _chain(
    runtime: Model, paths: list[str], kept: dict[str, str], options: InferOptions, table: bool
) -> Iterator[tuple[str, Batch]]:
    """Each file's batches in turn, with the file they come from."""
    specs = runtime.schema.inputs
    for path in paths:
        origin = "<stdin>" if path == "-" else path
        if table:
            spec = specs[0]
            columns = Columns(
                runtime.feature_names,
                cast(int, spec.shape[1]),  # a table model: checked fixed
                tuple(kept),
                spec.numpy_dtype,
                positional=options.positional,
            )
            batches = iter_batches(
                path,
                columns,
                batch_rows=options.batch_rows,
                stdin_format=options.stdin_format,
                policy=options.policy,
            )
        else:
            batches = iter_tensor_batches(
                path,
                specs,
                keep=tuple(kept),
                batch_rows=options.batch_rows,
                allow_nan=options.allow_nan,
                stdin_format=options.stdin_format,
                max_bytes=options.max_batch_bytes,
            )
        for batch in batches:
            yield origin, batch


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
