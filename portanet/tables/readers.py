"""Streaming readers: one entry point over the format modules of this package.

Tables for a model with one fixed-width 2-D input (:func:`iter_batches`): CSV/TSV and Parquet
through pyarrow (:mod:`.delimited`, :mod:`.parquet`), JSONL/JSON (:mod:`.jsonl`), NPY
memory-mapped (:mod:`.npy`); every reader selects the model's feature columns by name (extra
columns are ignored unless kept) and reports bad values with the file, the line or row, and the
column. Tensors of any rank and several inputs by name (:func:`iter_tensor_batches`): NPY, NPZ,
JSONL/JSON and Parquet with nested lists (:mod:`.tensors`); images (:mod:`.images`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import delimited, jsonl, npy, parquet, tensors
from portanet.tables.types import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, Batch, Columns

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".npy": "npy",
    ".npz": "npz",
}
#: Delimiters of the delimited-text formats.
DELIMITERS = {"csv": ",", "tsv": "\t"}


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
    batch_rows: int = DEFAULT_BATCH_ROWS,
    allow_nan: bool = False,
    stdin_format: str = "csv",
) -> Iterator[Batch]:
    """Yield feature batches of about ``batch_rows`` rows from a file (or ``-`` for stdin)."""
    fmt = input_format(path, stdin_format)
    _readable(path, batch_rows)
    if fmt == "npy":
        yield from npy.npy_batches(Path(path), columns, batch_rows, allow_nan)
    elif fmt == "npz":
        raise InputError(
            f"{path}: expected a table for a model with one 2-D input; an .npz "
            f"holds arrays by input name, for models with several or non-2-D "
            f"inputs"
        )
    elif fmt in DELIMITERS:
        yield from delimited.csv_batches(path, columns, batch_rows, allow_nan, DELIMITERS[fmt])
    elif fmt == "parquet":
        yield from parquet.parquet_batches(Path(path), columns, batch_rows, allow_nan)
    else:
        yield from jsonl.json_batches(path, fmt, columns, batch_rows, allow_nan)


def iter_tensor_batches(
    path: str | os.PathLike[str],
    specs: Sequence[TensorSpec],
    *,
    keep: Sequence[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    allow_nan: bool = False,
    stdin_format: str = "jsonl",
    max_bytes: int = DEFAULT_BATCH_BYTES,
) -> Iterator[Batch]:
    """Yield batches of samples for inputs of any rank (``Batch.feeds``: input name → array),
    at most ``batch_rows`` samples and about ``max_bytes`` of input per batch."""
    fmt = input_format(path, stdin_format)
    _readable(path, batch_rows)
    if fmt == "npy":
        yield from tensors.npy_tensor_batches(
            Path(path), specs, keep, batch_rows, allow_nan, max_bytes
        )
    elif fmt == "npz":
        yield from tensors.npz_batches(Path(path), specs, keep, batch_rows, allow_nan, max_bytes)
    elif fmt == "parquet":
        yield from tensors.parquet_tensor_batches(
            Path(path), specs, keep, batch_rows, allow_nan, max_bytes
        )
    elif fmt in ("json", "jsonl"):
        yield from tensors.json_tensor_batches(
            path, fmt, specs, keep, batch_rows, allow_nan, max_bytes
        )
    else:
        shapes = [(s.name, s.shape) for s in specs]
        raise InputError(
            f"{path}: a {fmt.upper()} table fits a model with one 2-D input of "
            f"fixed width; this model has the inputs {shapes}: expected .npy, "
            f".npz, .jsonl/.json or .parquet with nested lists, or images"
        )


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
