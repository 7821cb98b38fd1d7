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
        values = np.unpackbits(np.frombuffer(array.buffers()[1], dtype=np.uint8),
                               bitorder="little")[array.offset:array.offset + len(array)]
        values = values.astype(np.float32)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        dtype = np.dtype(kind.to_pandas_dtype())
        values = np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                               offset=array.offset * dtype.itemsize)
    else:
        raise InputError(f"expected a numeric Arrow array, got {kind} values")
    if array.null_count:
        valid = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8),
                              bitorder="little")[array.offset:array.offset + len(array)]
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
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                     [None, pa.py_buffer(values)])
    return pa.array(values.tolist() if values.dtype == object else values)
