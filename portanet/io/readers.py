"""Streaming readers: CSV and Parquet through pyarrow, JSONL/JSON, NPY memory-mapped.

Every reader selects the model's feature columns by name (extra columns are ignored unless kept)
and reports bad values with the file, the line or row, and the column.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".npy": "npy"}
DEFAULT_BATCH_ROWS = 65536


@dataclass
class Batch:
    """One chunk of input rows: ``features`` (rows × width, float32) and kept columns."""

    features: np.ndarray
    kept: dict[str, Any] = field(default_factory=dict)
    first_row: int = 0  # 0-based index of the first data row in the whole input


@dataclass(frozen=True)
class Columns:
    """How to pick features from a table: by name when known, else by position."""

    feature_names: tuple[str, ...] | None
    width: int
    keep: tuple[str, ...] = ()
    dtype: np.dtype = np.dtype(np.float32)


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
        raise InputError(f"--batch-size: expected a positive number of rows, got {batch_rows}")
    fmt = input_format(path, stdin_format)
    if str(path) != "-":
        source = Path(path)
        if not source.exists():
            raise InputError(f"{source}: no such file")
        if source.is_dir():
            raise InputError(f"{source}: expected a file, got a directory")
        if not os.access(source, os.R_OK):
            raise InputError(f"{source}: cannot read the file (permission denied)")
    from portanet.io import tables

    if fmt == "npy":
        yield from tables.npy_batches(Path(path), columns, batch_rows, allow_nan)
    elif fmt == "csv":
        yield from tables.csv_batches(path, columns, batch_rows, allow_nan)
    elif fmt == "parquet":
        yield from tables.parquet_batches(Path(path), columns, batch_rows, allow_nan)
    else:
        yield from tables.json_batches(path, fmt, columns, batch_rows, allow_nan)


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


def check_finite(matrix: np.ndarray, names: Sequence[str], origin: str, first_line: int,
                 line_word: str = "line") -> None:
    """Refuse NaN/Inf/empty values, naming the line (or row) and the column."""
    if matrix.dtype.kind != "f" or not matrix.size:
        return
    finite = np.isfinite(matrix)
    if finite.all():
        return
    row, col = map(int, np.argwhere(~finite)[0])
    value = matrix[row, col]
    shown = "an empty or NaN value" if np.isnan(value) else f"{value}"
    raise InputError(f"{origin}: {line_word} {first_line + row}, column {names[col]!r}: expected "
                     f"a finite number, got {shown} (use --allow-nan to pass NaN/Inf through)")


def locate_csv_problem(path: Path, names: Sequence[str], delimiter: str = ",") -> str | None:
    """Scan a CSV with the csv module to name the first line/column that pyarrow refused."""
    wanted = set(names)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                return (f"line {line}: expected {len(header)} columns like the header, "
                        f"got {len(row)}")
            for name, value in zip(header, row):
                if name in wanted and value.strip() not in ("",):
                    try:
                        float(value)
                    except ValueError:
                        return (f"line {line}, column {name!r}: expected a number, "
                                f"got {value[:40]!r}")
    return None


def json_records(text: str, origin: str) -> list[Any]:
    """Parse a JSON document holding a list of records (objects) or rows (lists)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{origin}: expected valid JSON, got an error at line {exc.lineno} "
                         f"column {exc.colno}: {exc.msg}") from exc
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list):
        raise InputError(f"{origin}: expected a JSON list of records or rows, "
                         f"got {type(data).__name__}")
    return data
