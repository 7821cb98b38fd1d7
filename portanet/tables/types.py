"""What the table readers yield and how they pick columns (shared by every format)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import describe_value, first_nonfinite

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


def select_columns(names: Sequence[str], columns: Columns, origin: str) -> tuple[list[str], list[str]]:
    """Feature columns (in model order) and kept columns among a file's column ``names``."""
    keep_missing = [k for k in columns.keep if k not in names]
    if keep_missing:
        raise InputError(f"{origin}: expected the kept columns {keep_missing} among the "
                         f"input's columns, got {list(names)}")
    if columns.feature_names:
        missing = [n for n in columns.feature_names if n not in names]
        if missing:
            raise InputError(f"{origin}: expected the feature columns "
                             f"{list(columns.feature_names)}, got {list(names)} "
                             f"(missing {missing})")
        return list(columns.feature_names), list(columns.keep)
    features = [n for n in names if n not in columns.keep]
    if len(features) != columns.width:
        raise InputError(f"{origin}: expected {columns.width} feature columns (the model has no "
                         f"feature names, so every column counts), got {len(features)}: "
                         f"{features}")
    return features, list(columns.keep)


def matrix_of(arrays: Sequence[Any], rows: int, dtype: np.dtype) -> np.ndarray:
    out = np.empty((rows, len(arrays)), dtype=dtype)
    for index, array in enumerate(arrays):
        out[:, index] = array
    return out


def slices(total: int, batch_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, batch_rows):
        yield start, min(start + batch_rows, total)


def check_finite(matrix: np.ndarray, names: Sequence[str], origin: str, first_line: int,
                 line_word: str = "line") -> None:
    """Refuse NaN/Inf/empty values of a feature matrix, naming the line (or row) and column."""
    found = first_nonfinite(matrix)
    if found is None:
        return
    row, col, value = found
    shown = "an empty or NaN value" if np.isnan(value) else describe_value(value)
    raise InputError(f"{origin}: {line_word} {first_line + row}, column {names[col]!r}: expected "
                     f"a finite number, got {shown} (allow_nan passes NaN/Inf through)")
