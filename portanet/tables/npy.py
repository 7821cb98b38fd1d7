"""Rows of a memory-mapped ``.npy`` array (never unpickled)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import first_out_of_range, range_message
from portanet.tables.types import Batch, Columns, check_finite, slices


def open_npy(source: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped, after checking its magic bytes; never unpickled."""
    origin = str(source)
    with open(source, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        raise InputError(
            f"{origin}: expected a .npy file (starting with \\x93NUMPY), got "
            f"leading bytes {magic!r}"
        )
    try:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(
            f"{origin}: expected a numeric .npy array, got one that needs pickle "
            f"(object arrays are refused): {exc}"
        ) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{origin}: expected a .npy file, numpy cannot read it: {exc}") from exc
    return np.asarray(array)


def npy_batches(
    source: Path, columns: Columns, batch_rows: int, allow_nan: bool
) -> Iterator[Batch]:
    """Rows of a memory-mapped ``.npy`` array (never unpickled)."""
    origin = str(source)
    if columns.keep:
        raise InputError(f"{origin}: kept columns need named columns; .npy arrays have none")
    array = open_npy(source)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != columns.width:
        raise InputError(
            f"{origin}: expected an array of shape (rows, {columns.width}), got {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{origin}: expected a numeric array, got dtype {array.dtype}")
    names = columns.feature_names or [f"column_{i}" for i in range(columns.width)]
    for start, stop in slices(array.shape[0], batch_rows):
        part = np.asarray(array[start:stop])
        found = first_out_of_range(part, np.dtype(columns.dtype))
        if found is not None:
            raise InputError(
                f"{origin}: row {start + found[0]}: expected {columns.dtype} "
                f"numbers, {range_message(found[1], columns.dtype)}"
            )
        matrix = part.astype(columns.dtype, copy=False)
        if not allow_nan:
            check_finite(matrix, names, origin, start, "row")
        yield Batch(matrix, {}, start)
