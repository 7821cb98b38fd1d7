"""Streaming readers: one entry point over the format modules of this package.

CSV and Parquet through pyarrow (:mod:`.delimited`, :mod:`.parquet`), JSONL/JSON
(:mod:`.jsonl`), NPY memory-mapped (:mod:`.npy`). Every reader selects the model's feature columns by name (extra columns are ignored unless kept)
and reports bad values with the file, the line or row, and the column.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.tables import delimited, jsonl, npy, parquet
from portanet.tables.types import DEFAULT_BATCH_ROWS, Batch, Columns

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".npy": "npy"}


def input_format(path: str | os.PathLike[str], stdin_format: str = "csv") -> str:
    """The reader for a path by suffix (``-`` reads stdin as ``stdin_format``)."""
    if str(path) == "-":
        return stdin_format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: expected one of {', '.join(sorted(FORMATS))}, "
                         f"got suffix {suffix or '(none)'!r}")
    return FORMATS[suffix]


def iter_batches(path: str | os.PathLike[str], columns: Columns, *,
                 batch_rows: int = DEFAULT_BATCH_ROWS, allow_nan: bool = False,
                 stdin_format: str = "csv") -> Iterator[Batch]:
    """Yield feature batches of about ``batch_rows`` rows from a file (or ``-`` for stdin)."""
    if batch_rows < 1:
        raise InputError(f"rows per batch: expected a positive number, got {batch_rows}")
    fmt = input_format(path, stdin_format)
    if str(path) != "-":
        source = Path(path)
        if not source.exists():
            raise InputError(f"{source}: no such file")
        if source.is_dir():
            raise InputError(f"{source}: expected a file, got a directory")
        if not os.access(source, os.R_OK):
            raise InputError(f"{source}: cannot read the file (permission denied)")
    if fmt == "npy":
        yield from npy.npy_batches(Path(path), columns, batch_rows, allow_nan)
    elif fmt == "csv":
        yield from delimited.csv_batches(path, columns, batch_rows, allow_nan)
    elif fmt == "parquet":
        yield from parquet.parquet_batches(Path(path), columns, batch_rows, allow_nan)
    else:
        yield from jsonl.json_batches(path, fmt, columns, batch_rows, allow_nan)


def read_all(path: str | os.PathLike[str], columns: Columns, *, allow_nan: bool = False) -> Batch:
    """The whole input as one batch (for parity data; inference streams instead)."""
    parts = list(iter_batches(path, columns, allow_nan=allow_nan))
    if not parts:
        return Batch(np.empty((0, columns.width), dtype=columns.dtype))
    kept = {k: np.array([v for p in parts for v in _as_list(p.kept[k])], dtype=object)
            for k in parts[0].kept}
    return Batch(np.concatenate([p.features for p in parts]), kept, 0)


def _as_list(values: Any) -> list[Any]:
    return values.to_pylist() if hasattr(values, "to_pylist") else np.asarray(values).tolist()
