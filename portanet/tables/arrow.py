"""numpy ↔ Arrow for flat numeric columns without going through pandas.

``pa.array`` and ``Array.to_numpy`` import pandas whenever it is installed (≈0.3 s of start-up
for a one-row ``portanet infer``); primitive columns are plain buffers, so read them directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from portanet.errors import InputError


def to_numpy(array: Any) -> np.ndarray:
    """A numeric (or boolean) Arrow array as numpy; nulls become NaN (as float64 if needed)."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_boolean(kind):
        values = np.unpackbits(
            np.frombuffer(array.buffers()[1], dtype=np.uint8), bitorder="little"
        )[array.offset : array.offset + len(array)]
        values = values.astype(np.float32)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        dtype = np.dtype(kind.to_pandas_dtype())
        values = np.frombuffer(
            array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
        )
    else:
        raise InputError(f"expected a numeric Arrow array, got {kind} values")
    if array.null_count:
        valid = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")[
            array.offset : array.offset + len(array)
        ]
        values = values.astype(np.result_type(values.dtype, np.float32), copy=True)
        values[valid == 0] = np.nan
    return values


def from_numpy(values: Any) -> Any:
    """An Arrow array for a 1-D numpy array: zero-copy for numbers, ``pa.array`` otherwise."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    values = np.asarray(values)
    if values.ndim == 1 and values.dtype.kind in "fiu" and values.dtype.isnative:
        values = np.ascontiguousarray(values)
        return pa.Array.from_buffers(
            pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
        )
    return pa.array(values.tolist() if values.dtype == object else values)


def _validity(mask: np.ndarray | None) -> Any:
    import pyarrow as pa

    if mask is None or not mask.any():
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def int_array(values: np.ndarray, mask: np.ndarray | None = None) -> Any:
    """An Arrow int64 array, null where ``mask`` is true (built from buffers: no pandas)."""
    import pyarrow as pa

    data = np.ascontiguousarray(values, dtype=np.int64)
    nulls = int(mask.sum()) if mask is not None else 0
    return pa.Array.from_buffers(
        pa.int64(), len(data), [_validity(mask), pa.py_buffer(data)], null_count=nulls
    )


def string_array(values: Any, mask: np.ndarray | None = None) -> Any:
    """An Arrow string array of ``values`` (``None`` or ``mask`` for nulls), from buffers."""
    import pyarrow as pa

    items = [v if isinstance(v, str) else "" if v is None else str(v) for v in values]
    if mask is None:
        missing = np.array([v is None for v in values], dtype=bool)
        mask = missing if missing.any() else None
    encoded = [item.encode("utf-8") for item in items]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    kind = pa.large_string() if offsets[-1] >= 2**31 else pa.string()
    offsets = offsets if kind == pa.large_string() else offsets.astype(np.int32)
    nulls = int(mask.sum()) if mask is not None else 0
    return pa.Array.from_buffers(
        kind,
        len(encoded),
        [_validity(mask), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
        null_count=nulls,
    )


def names_array(indices: np.ndarray, names: Any, mask: np.ndarray | None = None) -> Any:
    """``names[index]`` per row as a dictionary-encoded Arrow string array (the few names once,
    int32 indices per row), null where ``mask`` is true: as fast to build and to write as the
    indices themselves, and no pandas."""
    import pyarrow as pa

    index = np.ascontiguousarray(np.asarray(indices), dtype=np.int32)
    nulls = int(mask.sum()) if mask is not None else 0
    codes = pa.Array.from_buffers(
        pa.int32(), len(index), [_validity(mask), pa.py_buffer(index)], null_count=nulls
    )
    return pa.DictionaryArray.from_arrays(codes, string_array(list(names)))
