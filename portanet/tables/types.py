"""What the table readers yield and how they pick columns (shared by every format)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import InputError

#: What ``on_error`` may be: refuse the input at the first bad value, or set bad rows aside.
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class Rejected:
    """A row (or file) set aside under ``on_error="skip"``, and why."""

    file: str
    word: str  # what ``number`` counts: line, row, record, or file for a whole file
    number: int
    reason: str


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
    #: Rows of the input left out of this batch by the value policy (``on_error="skip"``).
    rejected: list[Rejected] = field(default_factory=list)

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


def slices(total: int, batch_rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of at most ``batch_rows`` of ``total`` rows."""
    for start in range(0, total, batch_rows):
        yield start, min(start + batch_rows, total)
