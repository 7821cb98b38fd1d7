"""The protocol's datatypes and its error: what every other serve module shares.

``ProtocolError`` is a request that breaks the Open Inference Protocol (its ``status`` is the
HTTP status to answer with), ``ModelOutputError`` a model output it cannot carry;
``DATATYPES`` maps the protocol's datatype names to numpy dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: V2 datatype → numpy dtype (little-endian, as the binary extension sends them).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items()}


class ProtocolError(Exception):
    """A request that breaks the protocol; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:  # keeps the status across processes
        return (type(self), (str(self), self.status))


class ModelOutputError(Exception):
    """A model answered with an output the protocol cannot carry (HTTP 500: the request was
    good, the served model is not servable as it is)."""


def datatype_of(dtype: np.dtype | str) -> str:
    """The V2 datatype name of a numpy dtype (``BYTES`` for strings and objects)."""
    dt = np.dtype(dtype) if not isinstance(dtype, str) or dtype != "str" else np.dtype(object)
    if dt.kind == "b":
        return "BOOL"
    return _BY_KIND.get((dt.kind, dt.itemsize), "BYTES")
