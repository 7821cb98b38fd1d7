"""What the table readers yield and how they pick columns (shared by every format)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import (
    describe_value,
    first_nonfinite,
    first_out_of_range,
    range_message,
)

DEFAULT_BATCH_ROWS = 65536
#: Input bytes per batch for tensor and image inputs (rows per batch shrink for heavy rows:
#: 27 images of 224×224×3 float32). A model's activations multiply it — 7.6× for a small CNN
#: measured in tests/tables/test_images.py, which is why this is not larger.
DEFAULT_BATCH_BYTES = 16 << 20


@dataclass
class Batch:
    """One chunk of input rows: ``features`` (rows × width, float32) and kept columns.

    Readers of tensor inputs (images, NPZ, nested lists) fill ``feeds`` (input name → array)
    instead, and ``features`` holds the first of them.
    """

    features: np.ndarray
    kept: dict[str, Any] = field(default_factory=dict)
    first_row: int = 0  # 0-based index of the first data row in the whole input
    feeds: dict[str, np.ndarray] | None = None

    @property
    def rows(self) -> int:
        """Number of rows (samples) in the batch."""
        return int(self.features.shape[0]) if self.features.ndim else 1


@dataclass(frozen=True)
class Columns:
    """How to pick features from a table: by name when known, else by position."""

    feature_names: tuple[str, ...] | None
    width: int
    keep: tuple[str, ...] = ()
    dtype: np.dtype = np.dtype(np.float32)
    #: Take a named input's columns in file order although the model has no feature names.
    positional: bool = False


def duplicate_names(names: Sequence[str]) -> list[str]:
    """Names that occur more than once, in order of first appearance."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def select_columns(
    names: Sequence[str], columns: Columns, origin: str
) -> tuple[list[str], list[str]]:
    """Feature columns (in model order) and kept columns among a file's column ``names``.

    A name that occurs twice is refused (which one is meant cannot be known). For a model without
    feature names, named columns are refused unless ``columns.positional``: their order would be
    taken as the model's, and a file in another order would be predicted silently wrong.
    """
    repeated = duplicate_names(names)
    if repeated:
        raise InputError(
            f"{origin}: expected each column name once, got {repeated} more than "
            f"once in {list(names)}"
        )
    keep_missing = [k for k in columns.keep if k not in names]
    if keep_missing:
        raise InputError(
            f"{origin}: expected the kept columns {keep_missing} among the "
            f"input's columns, got {list(names)}"
        )
    if columns.feature_names:
        missing = [n for n in columns.feature_names if n not in names]
        if missing:
            raise InputError(
                f"{origin}: expected the feature columns "
                f"{list(columns.feature_names)}, got {list(names)} "
                f"(missing {missing})"
            )
        return list(columns.feature_names), list(columns.keep)
    features = [n for n in names if n not in columns.keep]
    if not columns.positional:
        raise InputError(
            f"{origin}: the model records no feature names, so its columns can only "
            f"be taken by position, and this input names its columns {features}; "
            f"expected the caller to confirm that they are in the model's order "
            f"(positional columns), or a model exported with feature names"
        )
    if len(features) != columns.width:
        raise InputError(
            f"{origin}: expected {columns.width} feature columns (the model has no "
            f"feature names, so every column counts), got {len(features)}: "
            f"{features}"
        )
    return features, list(columns.keep)


def matrix_of(
    arrays: Sequence[Any],
    rows: int,
    dtype: np.dtype,
    names: Sequence[str] = (),
    origin: str = "",
    first_line: int = 0,
    line_word: str = "line",
) -> np.ndarray:
    """Columns stacked into a rows × columns matrix of ``dtype``; a finite value that ``dtype``
    cannot hold (1e39 for float32) is refused, naming the line and column, not turned into inf."""
    out = np.empty((rows, len(arrays)), dtype=dtype)
    for index, array in enumerate(arrays):
        found = first_out_of_range(np.asarray(array), out.dtype)
        if found is not None:
            name = names[index] if index < len(names) else f"column_{index}"
            raise InputError(
                f"{origin}: {line_word} {first_line + found[0]}, column {name!r}: "
                f"expected a number, {range_message(found[1], out.dtype)}"
            )
        out[:, index] = array
    return out


def slices(total: int, batch_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, batch_rows):
        yield start, min(start + batch_rows, total)


def check_finite(
    matrix: np.ndarray,
    names: Sequence[str],
    origin: str,
    first_line: int,
    line_word: str = "line",
    overflowed: Any = None,
    allow_nan: bool = False,
) -> None:
    """Refuse NaN/Inf/empty values of a feature matrix, naming the line (or row) and column.

    ``overflowed(line, column)``, when given, says whether an infinite value was a finite
    number too large for the matrix's dtype in the file (then ``"got 1e39, outside float32
    range"``); such a value is refused even with ``allow_nan``, which passes only what the
    file itself holds as NaN or Inf.
    """
    if allow_nan:
        if overflowed is None or matrix.dtype.kind != "f" or not np.isinf(matrix).any():
            return
        row, col = map(int, np.argwhere(np.isinf(matrix))[0])
        text = overflowed(first_line + row, col)
        if text:
            raise InputError(
                f"{origin}: {line_word} {first_line + row}, column "
                f"{names[col]!r}: expected a number, got {text}"
            )
        return
    found = first_nonfinite(matrix)
    if found is None:
        return
    row, col, value = found
    if np.isinf(value) and overflowed is not None:
        text = overflowed(first_line + row, col)
        if text:
            raise InputError(
                f"{origin}: {line_word} {first_line + row}, column "
                f"{names[col]!r}: expected a number, got {text}"
            )
    shown = "an empty or NaN value" if np.isnan(value) else describe_value(value)
    raise InputError(
        f"{origin}: {line_word} {first_line + row}, column {names[col]!r}: expected "
        f"a finite number, got {shown} (allow_nan passes NaN/Inf through)"
    )
