"""Checks shared by the tensor entry points of the format modules (``npy``, ``npz``, ``jsonl``,
``parquet``): inputs of any rank, for models that are not one fixed-width table. Samples stream
in batches; every value is checked (:func:`fit`) before the model sees it, and errors name the
file, the row (or line) and the input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from portanet.errors import InputError
from portanet.runtime.inputs import (
    describe_value,
    first_nonfinite,
    first_out_of_range,
    range_message,
)
from portanet.schema import TensorSpec
from portanet.tables.types import Batch, slices


def sample_shape_text(spec: TensorSpec) -> str:
    """``(rows, 28, 28, 1)`` with ``?`` for a dynamic dimension."""
    return (
        "(rows, " + ", ".join(str(d) if isinstance(d, int) else "?" for d in spec.shape[1:]) + ")"
    )


def fit(
    array: np.ndarray,
    spec: TensorSpec,
    origin: str,
    first_row: int,
    allow_nan: bool,
    word: str = "row",
    numbers: Sequence[int] | None = None,
) -> np.ndarray:
    """Check a batch of samples against ``spec`` and return it in the spec's dtype.

    Refused, naming the row (``numbers[i]`` when given, else ``first_row + i``): non-numeric
    dtypes, a wrong rank or fixed dimension, values the dtype cannot hold (1e39 for float32,
    fractions for integers) and, unless ``allow_nan``, NaN or ±Inf.
    """

    def where(index: int) -> str:
        return f"{word} {numbers[index] if numbers is not None else first_row + index}"

    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{origin}: input {spec.name!r}: expected numbers, got dtype {array.dtype}"
        )
    fixed = [(a, d) for a, d in enumerate(spec.shape) if isinstance(d, int) and a > 0]
    if array.ndim != spec.rank or any(array.shape[a] != d for a, d in fixed):
        raise InputError(
            f"{origin}: input {spec.name!r}: expected samples of shape "
            f"{sample_shape_text(spec)}, got {tuple(array.shape)}"
        )
    want = spec.numpy_dtype
    found = first_out_of_range(array, want)
    if found is not None:
        raise InputError(
            f"{origin}: {where(found[0])}: input {spec.name!r}: expected {want} "
            f"numbers, {range_message(found[1], want)}"
        )
    if want.kind in "iub" and array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            row = int(np.argmax(bad.reshape(len(array), -1).any(axis=1)))
            raise InputError(
                f"{origin}: {where(row)}: input {spec.name!r}: expected whole "
                f"numbers ({want}), got a fraction or NaN"
            )
    if not allow_nan:
        bad_value = first_nonfinite(array)
        if bad_value is not None:
            raise InputError(
                f"{origin}: {where(bad_value[0])}: input {spec.name!r}: expected "
                f"finite numbers, got {describe_value(bad_value[2])} (allow_nan "
                f"passes NaN/Inf through)"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(array, dtype=want)


def rows_for_bytes(
    sample_shape: Sequence[int], itemsize: int, batch_rows: int, max_bytes: int
) -> int:
    """Rows per batch: ``batch_rows``, fewer when a row weighs so much that a batch would pass
    ``max_bytes`` (224×224×3 float32 images: 444 rows in 64 MiB)."""
    row_bytes = max(1, int(np.prod(list(sample_shape) or [1], dtype=np.int64)) * itemsize)
    return max(1, min(batch_rows, max_bytes // row_bytes))


def sample_text(spec: TensorSpec) -> str:
    """``(28, 28, 1)`` with ``?`` for a dynamic dimension: one sample's shape."""
    return "(" + ", ".join(str(d) if isinstance(d, int) else "?" for d in spec.shape[1:]) + ")"


def sample_of(spec: TensorSpec) -> list[int]:
    """One sample's shape with 1 for a dynamic dimension (for sizing batches)."""
    return [d if isinstance(d, int) else 1 for d in spec.shape[1:]]


def array_batches(
    arrays: dict[str, np.ndarray],
    specs: Sequence[TensorSpec],
    kept: dict[str, np.ndarray],
    origin: str,
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Batches of samples of in-memory (or memory-mapped) arrays by input name, with kept
    1-D arrays beside them; every array must have the same number of rows."""
    for spec in specs:
        if arrays[spec.name].ndim == spec.rank - 1 and spec.rank > 1:  # one sample, no batch
            arrays[spec.name] = arrays[spec.name][np.newaxis]
    counts = {name: (a.shape[0] if a.ndim else 1) for name, a in {**arrays, **kept}.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"{origin}: expected one row count for every array, got {counts}")
    total = next(iter(counts.values()))
    weight = sum(
        int(np.prod(a.shape[1:], dtype=np.int64)) * s.numpy_dtype.itemsize
        for a, s in ((arrays[s.name], s) for s in specs)
    )
    step = rows_for_bytes([weight], 1, batch_rows, max_bytes)
    first = specs[0].name
    for start, stop in slices(total, step):
        feeds = {
            s.name: fit(np.asarray(arrays[s.name][start:stop]), s, origin, start, allow_nan)
            for s in specs
        }
        yield Batch(
            feeds[first], {k: np.asarray(v[start:stop]) for k, v in kept.items()}, start, feeds
        )
