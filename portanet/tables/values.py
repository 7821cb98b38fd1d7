"""The value policy: what a bad value is, and what happens to the row that holds it.

One place, used by every format reader of this package and by the Ray engine's read tasks and
predictor (:mod:`portanet.scale`), so that a value is judged the same way wherever it is read:

- a cell that is not a number (text in CSV, a string in JSON, a missing JSON field) is bad;
- a finite number that the model's dtype cannot hold (``1e39`` for float32) is bad, even with
  ``allow_nan`` (it would silently become inf);
- an empty cell, ``null``, NaN or ±Inf is bad unless ``allow_nan``.

``on_error="fail"`` refuses the input at the first bad row, naming the file, the line (or row,
or record) and the column; ``"skip"`` sets the row aside with that reason
(:class:`~portanet.tables.types.Rejected`) and predicts the others.

Readers produce :class:`Rows` (one array per feature, the numbers that name the rows, the kept
columns and any per-row parse errors); :func:`screen` judges them; :func:`apply` turns them
into a :class:`~portanet.tables.types.Batch` under a :class:`ValuePolicy`. Pure numpy and
pyarrow: no Ray here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import describe_value, range_message
from portanet.tables.types import ON_ERROR, Batch, Rejected

#: Internal columns of the Ray engine's blocks: the input file (index into the file list), the
#: number of the row in its file (line, row or record) and the reason the row is bad.
FILE_COLUMN = "_portanet_file"
ROW_COLUMN = "_portanet_row"
ERROR_COLUMN = "_portanet_error"
INTERNAL_COLUMNS = (FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN)

# What a number looks like as text (what Arrow's float parser accepts, after trimming).
_NUMBER = r"^[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|infinity)$"


@dataclass(frozen=True)
class ValuePolicy:
    """How bad values are treated: ``allow_nan`` passes empty/NaN/Inf values through (never a
    number too large for the dtype); ``on_error`` is ``"fail"`` or ``"skip"``."""

    allow_nan: bool = False
    on_error: str = "fail"

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise InputError(
                f"on error: expected one of {', '.join(ON_ERROR)}, got {self.on_error!r}"
            )


@dataclass
class Rows:
    """Rows as a reader found them, before the policy judged them.

    ``values``: one 1-D array per feature (any numeric dtype; NaN where a value is missing), or
    one 2-D array (rows × features). ``numbers``: the line, row or record number that names
    each row in messages (``word``). ``missing``: per feature, where the cell was empty/null
    (``None`` when none was). ``reasons``: per row, a parse error found by the reader.
    """

    values: Sequence[np.ndarray] | np.ndarray
    numbers: np.ndarray
    first_row: int = 0
    kept: dict[str, Any] = field(default_factory=dict)
    word: str = "line"
    missing: Sequence[np.ndarray | None] | None = None
    reasons: list[str | None] | None = None
    null_text: str = "an empty value"

    @property
    def count(self) -> int:
        """Number of rows."""
        return len(self.numbers)


def screen(
    rows: Rows, names: Sequence[str], dtype: Any, allow_nan: bool
) -> tuple[np.ndarray, list[str | None] | None]:
    """The rows as a ``rows × features`` matrix of ``dtype`` and, when some row is bad, one
    reason per row (``None`` where the row is fine)."""
    dtype = np.dtype(dtype)
    count = rows.count
    reasons = list(rows.reasons) if rows.reasons is not None else None

    def note(row: int, text: str) -> None:
        nonlocal reasons
        if reasons is None:
            reasons = [None] * count
        if reasons[row] is None:
            reasons[row] = text

    if isinstance(rows.values, np.ndarray) and rows.values.ndim == 2:
        source = np.asarray(rows.values)
        for row, col, value in _overflows(source, dtype):
            note(row, f"column {names[col]!r}: expected a number, {range_message(value, dtype)}")
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = np.ascontiguousarray(source, dtype=dtype)
    else:
        matrix = np.empty((count, len(rows.values)), dtype=dtype)
        for col, values in enumerate(rows.values):
            column = np.asarray(values)
            for row, _, value in _overflows(column.reshape(-1, 1), dtype):
                note(
                    row, f"column {names[col]!r}: expected a number, {range_message(value, dtype)}"
                )
            with np.errstate(over="ignore", invalid="ignore"):
                matrix[:, col] = column
    if not allow_nan and dtype.kind == "f" and matrix.size:
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(matrix, axis=None)
        if not np.isfinite(total):
            finite = np.isfinite(matrix)
            for found in np.flatnonzero(~finite.all(axis=1)):
                row = int(found)
                if reasons is not None and reasons[row] is not None:
                    continue
                col = int(np.argmin(finite[row]))
                gone = rows.missing is not None and rows.missing[col] is not None
                shown = (
                    rows.null_text
                    if gone and bool(rows.missing[col][row])  # type: ignore[index]
                    else describe_value(float(matrix[row, col]))
                )
                note(
                    row,
                    f"column {names[col]!r}: expected a finite number, got {shown} "
                    f"(allow_nan passes NaN/Inf through)",
                )
    return matrix, reasons


def _overflows(source: np.ndarray, dtype: np.dtype) -> list[tuple[int, int, float]]:
    """(row, column, value) of each finite value too large for ``dtype`` (float → narrower
    float only: integers and same-width floats cannot overflow in the cast)."""
    if (
        dtype.kind != "f"
        or source.dtype.kind != "f"
        or not source.size
        or np.finfo(source.dtype).max <= np.finfo(dtype).max
    ):
        return []
    limit = float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        high = np.fmax.reduce(np.abs(source), axis=None)  # NaN ignored (all NaN: NaN)
    if not high > limit:
        return []
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(source) & (np.abs(source) > limit)
    return [(int(r), int(c), float(source[r, c])) for r, c in np.argwhere(bad)]


def apply(rows: Rows, names: Sequence[str], dtype: Any, policy: ValuePolicy, origin: str) -> Batch:
    """The rows as a :class:`Batch` under ``policy``: refused at the first bad row
    (``"fail"``), or without the bad rows, which the batch lists in ``rejected`` (``"skip"``)."""
    matrix, reasons = screen(rows, names, dtype, policy.allow_nan)
    if reasons is None:
        return Batch(matrix, rows.kept, rows.first_row)
    bad = np.array([r is not None for r in reasons], dtype=bool)
    if not bad.any():
        return Batch(matrix, rows.kept, rows.first_row)
    if policy.on_error == "fail":
        first = int(np.argmax(bad))
        raise InputError(f"{origin}: {rows.word} {int(rows.numbers[first])}, {reasons[first]}")
    rejected = [
        Rejected(origin, rows.word, int(rows.numbers[i]), str(reasons[i]))
        for i in np.flatnonzero(bad)
    ]
    good = ~bad
    kept = {k: take(v, good) for k, v in rows.kept.items()}
    return Batch(np.ascontiguousarray(matrix[good]), kept, rows.first_row, rejected=rejected)


def take(values: Any, mask: np.ndarray) -> Any:
    """The entries of an Arrow or numpy array where ``mask`` is true."""
    if hasattr(values, "filter"):
        import pyarrow as pa

        return values.filter(pa.array(mask))
    return np.asarray(values)[mask]


def column_values(
    array: Any, name: str, origin: str
) -> tuple[np.ndarray, np.ndarray | None, list[str | None] | None]:
    """An Arrow column of numbers, booleans or numeric text as numpy (float64 where a value is
    missing or text was parsed), where it was missing, and per-row reasons for text that is not
    a number (``None`` when every cell parsed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from portanet.tables.arrow import to_numpy

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    missing = None
    if array.null_count:
        missing = ~np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return to_numpy(array), missing, None
    if pa.types.is_null(kind) or pa.types.is_decimal(kind):
        values = pc.cast(array, pa.float64(), safe=False)
        return values.to_numpy(zero_copy_only=False).astype(np.float64), missing, None
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
    values, reasons = float_column(array, name, origin)
    return values.to_numpy(zero_copy_only=False).astype(np.float64), missing, reasons


def float_column(array: Any, name: str, origin: str) -> tuple[Any, list[str | None] | None]:
    """``array`` (an Arrow array of numbers, booleans or text) as float64 Arrow values.

    Returns the values (a cell that is not a number becomes null) and, only when some text cell
    was not a number, one reason per row (``None`` where the row is fine). Parsed as float64 so
    that a number too large for the model's float32 is seen as what it is, not as inf.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if (
        pa.types.is_floating(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
        or pa.types.is_decimal(kind)
    ):
        return pc.cast(array, pa.float64(), safe=False), None
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
    try:
        return pc.cast(array, pa.float64()), None
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(array)
    try:
        return pc.cast(trimmed, pa.float64()), None
    except pa.ArrowInvalid:
        pass
    ok = pc.match_substring_regex(trimmed, _NUMBER, ignore_case=True)
    bad = np.asarray(pc.fill_null(pc.invert(ok), False).to_numpy(zero_copy_only=False))
    cleaned = pc.if_else(pa.array(bad), pa.scalar(None, trimmed.type), trimmed)
    try:
        values = pc.cast(cleaned, pa.float64())
    except pa.ArrowInvalid:  # the pattern let through something Arrow refuses: cell by cell
        parsed = []
        for index, cell in enumerate(cleaned.to_pylist()):
            try:
                parsed.append(
                    None if cell is None else pc.cast(pa.array([cell]), pa.float64())[0].as_py()
                )
            except pa.ArrowInvalid:
                parsed.append(None)
                bad[index] = True
        values = pa.array(parsed, pa.float64())
    reasons: list[str | None] = [None] * len(array)
    for position in np.flatnonzero(bad):
        cell = array[int(position)].as_py()
        reasons[int(position)] = f"column {name!r}: expected a number, got {cell[:40]!r}"
    return values, reasons


def table_rows(
    table: Any,
    features: Sequence[str],
    keep: Sequence[str],
    origin: str,
    numbers: np.ndarray,
    first_row: int,
    word: str,
) -> Rows:
    """:class:`Rows` of an Arrow table or record batch: its ``features`` as numbers (numeric
    text parsed, with a reason per cell that is not a number) and its ``keep`` columns."""
    values, missing = [], []
    reasons: list[str | None] | None = None
    for name in features:
        column, gone, why = column_values(table.column(name), name, origin)
        values.append(column)
        missing.append(gone)
        if why is not None:
            reasons = (
                why if reasons is None else [a or b for a, b in zip(reasons, why, strict=True)]
            )
    return Rows(
        values,
        numbers,
        first_row,
        {k: table.column(k) for k in keep},
        word,
        missing,
        reasons,
    )
