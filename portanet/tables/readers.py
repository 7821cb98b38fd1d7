"""Streaming readers: one dispatch over the format modules of this package.

Each format module (:mod:`.delimited` for CSV/TSV, :mod:`.parquet`, :mod:`.jsonl` for JSON
Lines and JSON, :mod:`.npy`, :mod:`.npz`) has the entry points it can serve: ``table_batches``
for a model with one fixed-width 2-D input (:func:`iter_batches`), ``tensor_batches`` for
inputs of any rank and several inputs by name (:func:`iter_tensor_batches`), and ``read_rows``
on any pyarrow filesystem for the Ray engine (:func:`file_rows`). Every value is judged by one
policy, :mod:`portanet.tables.values`. Images live in :mod:`.images`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import delimited, jsonl, npy, npz, parquet
from portanet.tables.files import FORMATS, InputFile, filesystem
from portanet.tables.options import DEFAULT_BATCH_BYTES, LOCAL_ROWS_PER_BATCH
from portanet.tables.types import Batch, Columns
from portanet.tables.values import Rows, ValuePolicy

#: Delimiters of the delimited-text formats.
DELIMITERS = {"csv": ",", "tsv": "\t"}
#: Formats the Ray engine reads (any pyarrow filesystem; .npy/.npz need a local memory map).
RAY_FORMATS = ("csv", "tsv", "parquet", "jsonl", "json")

__all__ = ["FORMATS", "file_rows", "input_format", "iter_batches", "iter_tensor_batches"]


def input_format(path: str | os.PathLike[str], stdin_format: str = "csv") -> str:
    """The reader for a path by suffix (``-`` reads stdin as ``stdin_format``)."""
    if str(path) == "-":
        return stdin_format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{path}: expected one of {', '.join(sorted(FORMATS))}, "
            f"got suffix {suffix or '(none)'!r}"
        )
    return FORMATS[suffix]


def _readable(path: str | os.PathLike[str], batch_rows: int) -> None:
    if batch_rows < 1:
        raise InputError(f"rows per batch: expected a positive number, got {batch_rows}")
    if str(path) != "-":
        source = Path(path)
        if not source.exists():
            raise InputError(f"{source}: no such file")
        if source.is_dir():
            raise InputError(f"{source}: expected a file, got a directory")
        if not os.access(source, os.R_OK):
            raise InputError(f"{source}: cannot read the file (permission denied)")


def iter_batches(
    path: str | os.PathLike[str],
    columns: Columns,
    *,
    batch_rows: int = LOCAL_ROWS_PER_BATCH,
    allow_nan: bool = False,
    stdin_format: str = "csv",
    policy: ValuePolicy | None = None,
) -> Iterator[Batch]:
    """Yield feature batches of about ``batch_rows`` rows from a file (or ``-`` for stdin),
    values judged by ``policy`` (default: fail on a bad value, NaN/Inf only with
    ``allow_nan``)."""
    policy = policy or ValuePolicy(allow_nan)
    fmt = input_format(path, stdin_format)
    _readable(path, batch_rows)
    if fmt == "npy":
        yield from npy.table_batches(Path(path), columns, batch_rows, policy)
    elif fmt == "npz":
        raise InputError(
            f"{path}: expected a table for a model with one 2-D input; an .npz "
            f"holds arrays by input name, for models with several or non-2-D "
            f"inputs"
        )
    elif fmt in DELIMITERS:
        yield from delimited.table_batches(path, columns, batch_rows, policy, DELIMITERS[fmt])
    elif fmt == "parquet":
        yield from parquet.table_batches(Path(path), columns, batch_rows, policy)
    else:
        yield from jsonl.table_batches(path, fmt, columns, batch_rows, policy)


def iter_tensor_batches(
    path: str | os.PathLike[str],
    specs: Sequence[TensorSpec],
    *,
    keep: Sequence[str] = (),
    batch_rows: int = LOCAL_ROWS_PER_BATCH,
    allow_nan: bool = False,
    stdin_format: str = "jsonl",
    max_bytes: int = DEFAULT_BATCH_BYTES,
) -> Iterator[Batch]:
    """Yield batches of samples for inputs of any rank (``Batch.feeds``: input name → array),
    at most ``batch_rows`` samples and about ``max_bytes`` of input per batch."""
    fmt = input_format(path, stdin_format)
    _readable(path, batch_rows)
    if fmt == "npy":
        yield from npy.tensor_batches(Path(path), specs, keep, batch_rows, allow_nan, max_bytes)
    elif fmt == "npz":
        yield from npz.tensor_batches(Path(path), specs, keep, batch_rows, allow_nan, max_bytes)
    elif fmt == "parquet":
        yield from parquet.tensor_batches(Path(path), specs, keep, batch_rows, allow_nan, max_bytes)
    elif fmt in ("json", "jsonl"):
        yield from jsonl.tensor_batches(path, fmt, specs, keep, batch_rows, allow_nan, max_bytes)
    else:
        shapes = [(s.name, s.shape) for s in specs]
        raise InputError(
            f"{path}: a {fmt.upper()} table fits a model with one 2-D input of "
            f"fixed width; this model has the inputs {shapes}: expected .npy, "
            f".npz, .jsonl/.json or .parquet with nested lists, or images"
        )


def file_rows(
    source: InputFile, columns: Columns, batch_rows: int, names_out: list[str]
) -> Iterator[Rows]:
    """The Ray engine's entry point: the :class:`Rows` of one input file on any pyarrow
    filesystem (``names_out`` receives the feature names in model order)."""
    if source.fmt not in RAY_FORMATS:
        raise InputError(
            f"{source.path}: the Ray engine reads {', '.join(RAY_FORMATS)} files, got "
            f"{source.fmt}; convert it to Parquet, or use the local engine"
        )
    fs, inner, _ = filesystem(source.path)
    if source.fmt in DELIMITERS:
        yield from delimited.read_rows(
            fs, inner, source.path, columns, batch_rows, DELIMITERS[source.fmt], names_out
        )
    elif source.fmt == "parquet":
        yield from parquet.read_rows(fs, inner, source.path, columns, batch_rows, names_out)
    else:
        if columns.feature_names is None:
            raise InputError(
                f"{source.path}: JSON records are matched by feature name, and the model has none"
            )
        names_out[:] = list(columns.feature_names)
        yield from jsonl.read_rows(fs, inner, source.path, columns, batch_rows, source.fmt)


def read_all(path: str | os.PathLike[str], columns: Columns, *, allow_nan: bool = False) -> Batch:
    """The whole input as one batch (for parity data; inference streams instead)."""
    parts = list(iter_batches(path, columns, allow_nan=allow_nan))
    if not parts:
        return Batch(np.empty((0, columns.width), dtype=columns.dtype))
    kept = {
        k: np.array([v for p in parts for v in _as_list(p.kept[k])], dtype=object)
        for k in parts[0].kept
    }
    return Batch(np.concatenate([p.features for p in parts]), kept, 0)


def _as_list(values: Any) -> list[Any]:
    return list(values.to_pylist() if hasattr(values, "to_pylist") else np.asarray(values).tolist())
