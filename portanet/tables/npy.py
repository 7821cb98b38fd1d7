"""``.npy`` arrays, memory-mapped and never unpickled.

Entry points: :func:`table_batches` (rows of a table model, judged by
:mod:`portanet.tables.values`) and :func:`tensor_batches` (samples of any rank). The Ray engine
does not read .npy (a memory map needs a local file): convert to Parquet for a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables.tensors import array_batches
from portanet.tables.types import Batch, Columns, slices
from portanet.tables.values import Rows, ValuePolicy, apply


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
        if not _holds_objects(source):  # a damaged or truncated file, not an object array
            raise InputError(
                f"{origin}: expected a .npy file, numpy cannot read it: {exc}"
            ) from exc
        raise InputError(
            f"{origin}: expected a numeric .npy array, got one that needs pickle "
            f"(object arrays are refused): {exc}"
        ) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{origin}: expected a .npy file, numpy cannot read it: {exc}") from exc
    return np.asarray(array)


def _holds_objects(source: Path) -> bool:
    """Whether a ``.npy`` header that numpy can read declares Python objects (pickled data)."""
    try:
        with open(source, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            return bool(read(handle)[2].hasobject)
    except (ValueError, OSError, EOFError):
        return False


def table_batches(
    source: Path, columns: Columns, batch_rows: int, policy: ValuePolicy
) -> Iterator[Batch]:
    """Table entry point: rows of a memory-mapped ``(rows, width)`` array, numbered from 0,
    judged by ``policy``."""
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
    names = list(columns.feature_names or [f"column_{i}" for i in range(columns.width)])
    for start, stop in slices(array.shape[0], batch_rows):
        rows = Rows(np.asarray(array[start:stop]), np.arange(start, stop), start, word="row")
        yield apply(rows, names, columns.dtype, policy, origin)


def tensor_batches(
    source: Path,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Samples of a memory-mapped ``.npy`` array for a model with one input (never unpickled)."""
    origin = str(source)
    if len(specs) != 1:
        raise InputError(
            f"{origin}: a model with the inputs {[s.name for s in specs]} needs "
            f"one array per input, expected an .npz holding arrays by those names"
        )
    if keep:
        raise InputError(f"{origin}: kept columns need named columns; .npy arrays have none")
    array = open_npy(source)
    yield from array_batches(
        {specs[0].name: array}, specs, {}, origin, batch_rows, allow_nan, max_bytes
    )
