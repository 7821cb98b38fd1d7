"""Turn whatever the caller passed into checked numpy feeds for onnxruntime.

Accepted: a numpy array, a list of rows, a dict of named columns (any order), a pyarrow Table, or
a pandas DataFrame (pandas is optional). Multi-input models take a dict input name → array.
Everything is checked before onnxruntime sees it, and errors name input, expected, got and the
first offending row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from portanet.errors import InputError, name_mismatch
from portanet.schema import TensorSpec


def _first_bad_row(mask: np.ndarray) -> int:
    flat = mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask
    return int(np.argmax(flat))


def coerce_array(value: Any, spec: TensorSpec, *, allow_nan: bool = False) -> np.ndarray:
    """Check ``value`` against ``spec`` and return a C-contiguous array of the spec's dtype."""
    want = spec.numpy_dtype
    if isinstance(value, np.ndarray) and value.dtype == want and value.ndim == spec.rank:
        array = value
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"input {spec.name!r}: expected a rectangular array of numbers, "
                f"got {type(value).__name__} that numpy cannot read ({exc})"
            ) from exc
        if array.ndim == spec.rank - 1 and spec.rank >= 2 and array.ndim >= 1:
            array = array[np.newaxis, ...]  # one sample without its batch dimension
        array = _convert_dtype(array, want, spec.name)
    if array.ndim != spec.rank:
        raise InputError(
            f"input {spec.name!r}: expected {spec.rank} dimensions "
            f"{_shape_text(spec.shape)}, got {array.ndim} {tuple(array.shape)}"
        )
    for axis, (dim, got) in enumerate(zip(spec.shape, array.shape, strict=False)):
        if isinstance(dim, int) and dim != got:
            raise InputError(
                f"input {spec.name!r}: expected size {dim} on axis {axis} "
                f"{_shape_text(spec.shape)}, got {got} {tuple(array.shape)}"
            )
    if not allow_nan:
        check_finite(spec.name, array)
    return np.ascontiguousarray(array)


def first_nonfinite(array: np.ndarray) -> tuple[int, int, float] | None:
    """``(row, flat column within the row, value)`` of the first NaN or ±Inf of a float array
    (row 0 for a scalar), or ``None`` when every value is finite (and for non-float arrays)."""
    if array.dtype.kind != "f" or not array.size:
        return None
    finite = np.isfinite(array)
    if finite.all():
        return None
    if array.ndim == 0:
        return 0, 0, float(array[()])
    row = _first_bad_row(~finite)
    flat = finite[row].reshape(-1)
    column = int(np.argmin(flat)) if flat.size else 0
    value = array[row].reshape(-1)[column] if array.ndim > 1 else array[row]
    return row, column, float(value)


def describe_value(value: float) -> str:
    """How a refused number is shown: NaN as NaN, ±Inf as ±inf."""
    return "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")


def first_out_of_range(array: np.ndarray, want: np.dtype) -> tuple[int, float] | None:
    """``(row, value)`` of the first finite value of a float array that ``want`` (a narrower
    float type, e.g. float32) cannot hold, or ``None``: such a value would silently become
    ±inf in the cast (row 0 for a scalar)."""
    if (
        array.dtype.kind != "f"
        or want.kind != "f"
        or not array.size
        or np.finfo(array.dtype).max <= np.finfo(want).max
    ):
        return None
    limit = float(np.finfo(want).max)
    with np.errstate(invalid="ignore"):
        high, low = array.max(), array.min()
    if (np.isfinite(high) and np.isfinite(low)) and max(abs(float(high)), abs(float(low))) <= limit:
        return None
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(array) & (np.abs(array) > limit)
    if not bad.any():
        return None
    if array.ndim == 0:
        return 0, float(array[()])
    row = _first_bad_row(bad)
    return row, float(array[row][bad[row]].reshape(-1)[0]) if array.ndim > 1 else float(array[row])


def range_message(value: float, want: np.dtype) -> str:
    """``got 1e+39, outside float32 range`` (how an overflowing value is refused)."""
    return f"got {value:g}, outside {np.dtype(want).name} range"


def check_vocabulary(name: str, array: np.ndarray, size: int, row_offset: int = 0) -> None:
    """Refuse ids outside ``[0, size)`` (or not whole numbers) for an input read by an
    ``Embedding`` of vocabulary ``size``: onnxruntime would fail on them, or silently wrap a
    negative id around to the end of the table. Names the first offending row."""
    if not array.size:
        return
    with np.errstate(invalid="ignore"):
        low, high = array.min(), array.max()
        fine = bool(low >= 0) and bool(high < size)
        if fine and array.dtype.kind == "f":
            fine = bool(np.array_equal(array, np.floor(array)))
        if fine:
            return
        bad = ~((array >= 0) & (array < size))
        if array.dtype.kind == "f":
            bad |= array != np.floor(array)
    row = _first_bad_row(bad) if array.ndim else 0
    sample = array[row] if array.ndim else array
    value = sample[bad[row]].reshape(-1)[0] if array.ndim > 1 else sample
    shown = (
        describe_value(float(value))
        if array.dtype.kind == "f" and not np.isfinite(value)
        else f"{value:g}"
        if array.dtype.kind == "f"
        else str(int(value))
    )
    raise InputError(
        f"input {name!r}: expected integer ids in [0, {size}) (the vocabulary "
        f"size recorded at export), got {shown} in row {row + row_offset}"
    )


def check_finite(name: str, array: np.ndarray, row_offset: int = 0) -> None:
    """Raise :class:`InputError` naming the first row holding NaN or ±Inf (floats only)."""
    found = first_nonfinite(array)
    if found is None:
        return
    row, _, value = found
    if array.ndim == 0:
        raise InputError(f"input {name!r}: expected a finite number, got {describe_value(value)}")
    raise InputError(
        f"input {name!r}: expected finite numbers, got {describe_value(value)} in "
        f"row {row + row_offset} (pass allow_nan=True to let NaN/Inf through)"
    )


def _convert_dtype(array: np.ndarray, want: np.dtype, name: str) -> np.ndarray:
    kind = array.dtype.kind
    if kind in "OUSVM" or kind == "c":
        if kind == "O":
            try:
                return _convert_dtype(np.array(array.tolist(), dtype=np.float64), want, name)
            except (ValueError, TypeError):
                pass
        row = _first_non_numeric(array) if kind != "c" else None
        where = f" (first at row {row})" if row is not None else ""
        raise InputError(
            f"input {name!r}: expected numbers ({want}), got {array.dtype} values{where}"
        )
    if want.kind == "f" and kind == "f":
        found = first_out_of_range(array, want)
        if found is not None:
            raise InputError(
                f"input {name!r}: expected {want} numbers, "
                f"{range_message(found[1], want)} in row {found[0]}"
            )
    if want.kind in "iu" and kind == "f":
        finite = np.isfinite(array)
        if not finite.all() or not np.array_equal(array, np.round(array)):
            bad = ~finite | (np.nan_to_num(array) != np.round(np.nan_to_num(array)))
            raise InputError(
                f"input {name!r}: expected integers ({want}), got non-integer "
                f"values, first in row {_first_bad_row(bad)}"
            )
    if array.dtype == want:
        return array
    return array.astype(want)


def _first_non_numeric(array: np.ndarray) -> int | None:
    if array.ndim == 0:
        return None
    for index, row in enumerate(array.reshape(array.shape[0], -1)):
        for item in row:
            try:
                float(item)
            except (TypeError, ValueError):
                return index
    return None


def _shape_text(shape: Sequence[int | str | None]) -> str:
    return (
        "(" + ", ".join("batch" if d is None or isinstance(d, str) else str(d) for d in shape) + ")"
    )


def columns_of(value: Any) -> Mapping[str, Any] | None:
    """The named columns of a dict, pyarrow Table or pandas DataFrame; ``None`` for others."""
    if isinstance(value, Mapping):
        return value
    module = type(value).__module__
    if module.startswith("pyarrow") and hasattr(value, "column_names"):
        return {
            name: value.column(name).to_numpy(zero_copy_only=False) for name in value.column_names
        }
    if module.startswith("pandas") and hasattr(value, "columns") and hasattr(value, "to_numpy"):
        return {str(name): value[name].to_numpy() for name in value.columns}
    return None


def stack_features(
    columns: Mapping[str, Any], feature_names: Sequence[str], spec: TensorSpec
) -> np.ndarray:
    """Stack named columns in the model's feature order; missing or unknown names are errors."""
    mismatch = name_mismatch(feature_names, list(columns))
    if mismatch:
        raise InputError(
            f"input {spec.name!r}: expected the columns {list(feature_names)}, "
            f"got {list(columns)} ({mismatch})"
        )
    want = spec.numpy_dtype
    lengths = {len(np.atleast_1d(columns[n])) for n in feature_names}
    if len(lengths) > 1:
        raise InputError(
            f"input {spec.name!r}: expected columns of one length, got lengths {sorted(lengths)}"
        )
    out = np.empty((lengths.pop() if lengths else 0, len(feature_names)), dtype=want)
    for index, name in enumerate(feature_names):
        column = np.atleast_1d(np.asarray(columns[name]))
        try:
            out[:, index] = _convert_dtype(column, want, f"{spec.name}.{name}")
        except InputError as exc:
            raise InputError(f"column {name!r}: {exc}") from exc
    return out
