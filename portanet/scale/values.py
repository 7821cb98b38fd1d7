"""Feature columns as float32, with a reason for every value that is not a number.

Shared by the Ray read tasks (CSV cells arrive as text so that one bad cell costs one row, not
the file) and by the predictor (which also accepts datasets read by the user's own code).
Pure pyarrow + numpy: no Ray here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from portanet.errors import InputError

#: Internal columns added by portanet's readers: the input file (index into the file list),
#: the 1-based line (CSV), row (Parquet) or record (JSONL) number, and a parse error.
FILE_COLUMN = "_portanet_file"
ROW_COLUMN = "_portanet_row"
ERROR_COLUMN = "_portanet_error"
INTERNAL_COLUMNS = (FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN)

# What a number looks like as text (what Arrow's float parser accepts, after trimming).
_NUMBER = r"^[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|infinity)$"


def float_column(array: Any, name: str, origin: str) -> tuple[Any, list[str | None] | None]:
    """``array`` (an Arrow array of numbers, booleans or text) as float32.

    Returns the float32 array (a cell that is not a number becomes null) and, only when some
    text cell was not a number, one reason per row (``None`` where the row is fine).
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
        return pc.cast(array, pa.float32(), safe=False), None
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
    try:
        return pc.cast(array, pa.float32()), None
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(array)
    try:
        return pc.cast(trimmed, pa.float32()), None
    except pa.ArrowInvalid:
        pass
    ok = pc.match_substring_regex(trimmed, _NUMBER, ignore_case=True)
    bad = np.asarray(pc.fill_null(pc.invert(ok), False).to_numpy(zero_copy_only=False))
    cleaned = pc.if_else(pa.array(bad), pa.scalar(None, trimmed.type), trimmed)
    try:
        values = pc.cast(cleaned, pa.float32())
    except pa.ArrowInvalid:  # the pattern let through something Arrow refuses: cell by cell
        parsed = []
        for index, cell in enumerate(cleaned.to_pylist()):
            try:
                parsed.append(
                    None if cell is None else pc.cast(pa.array([cell]), pa.float32())[0].as_py()
                )
            except pa.ArrowInvalid:
                parsed.append(None)
                bad[index] = True
        values = pa.array(parsed, pa.float32())
    reasons: list[str | None] = [None] * len(array)
    for index in np.flatnonzero(bad).tolist():
        cell = array[int(index)].as_py()
        reasons[int(index)] = f"column {name!r}: expected a number, got {cell[:40]!r}"
    return values, reasons


def numeric_features(table: Any, features: Sequence[str], origin: str) -> tuple[Any, Any]:
    """The ``features`` of ``table`` as float32 Arrow arrays, and one error string per row
    (an Arrow string array, null where every feature parsed)."""
    import pyarrow as pa

    columns = []
    reasons: list[str | None] | None = None
    for name in features:
        values, why = float_column(table.column(name), name, origin)
        columns.append(values)
        if why is not None:
            reasons = (
                why if reasons is None else [a or b for a, b in zip(reasons, why, strict=False)]
            )
    errors = (
        pa.nulls(table.num_rows, pa.string()) if reasons is None else pa.array(reasons, pa.string())
    )
    return columns, errors


def feature_matrix(columns: Sequence[Any], dtype: np.dtype) -> np.ndarray:
    """Rows × features for onnxruntime from float32 Arrow arrays (nulls become NaN)."""
    rows = len(columns[0]) if columns else 0
    out = np.empty((rows, len(columns)), dtype=dtype)
    for index, column in enumerate(columns):
        out[:, index] = column.to_numpy(zero_copy_only=False)
    return out


def row_reason(
    columns: Sequence[Any],
    matrix: np.ndarray,
    row: int,
    names: Sequence[str],
    parse_error: str | None,
) -> str:
    """Why row ``row`` cannot be predicted: a parse error, else its first empty/NaN/Inf value."""
    if parse_error:
        return parse_error
    for col, name in enumerate(names):
        value = matrix[row, col]
        if np.isfinite(value):
            continue
        if not columns[col][row].is_valid:
            return f"column {name!r}: expected a number, got an empty value"
        return f"column {name!r}: expected a finite number, got {float(value)}"
    return "no problem found"  # not reached: called for bad rows only
