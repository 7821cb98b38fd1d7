"""Tensor inputs of any rank, for models that are not one fixed-width table: ``.npy``
(memory-mapped), ``.npz`` (one array per input name, memory-mapped when stored uncompressed),
JSON Lines / JSON (nested lists, one field per input name) and Parquet (nested list columns
named by input). Samples stream in batches; every value is checked before the model sees it,
and errors name the file, the row (or line) and the input.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError, name_mismatch
from portanet.runtime.inputs import (
    describe_value,
    first_nonfinite,
    first_out_of_range,
    range_message,
)
from portanet.schema import TensorSpec
from portanet.tables.jsonl import in_groups, numbered_records
from portanet.tables.npy import open_npy
from portanet.tables.types import Batch, duplicate_names, slices


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


def _sample_text(spec: TensorSpec) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "?" for d in spec.shape[1:]) + ")"


def _sample_of(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else 1 for d in spec.shape[1:]]


# --- NPY and NPZ --------------------------------------------------------------------------------


def npy_tensor_batches(
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
    yield from _array_batches(
        {specs[0].name: array}, specs, {}, origin, batch_rows, allow_nan, max_bytes
    )


def _array_batches(
    arrays: dict[str, np.ndarray],
    specs: Sequence[TensorSpec],
    kept: dict[str, np.ndarray],
    origin: str,
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
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


def npz_batches(
    source: Path,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Samples of an ``.npz`` holding one array per input name (one array is enough for a
    single-input model) and 1-D arrays for kept columns; members stored uncompressed
    (``np.savez``) are memory-mapped, compressed ones (``np.savez_compressed``) are read whole."""
    origin = str(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"{origin}: expected an .npz archive (a zip of .npy arrays), got: {exc}"
        ) from exc
    with archive:
        members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
        wanted = [s.name for s in specs]
        if len(specs) == 1 and wanted[0] not in members:
            arrays_only = [n for n in members if n not in keep]
            if len(arrays_only) != 1:
                raise InputError(
                    f"{origin}: expected an array named {wanted[0]!r} (or a "
                    f"single array), got {sorted(members)}"
                )
            members[wanted[0]] = members[arrays_only[0]]
        missing = [n for n in [*wanted, *keep] if n not in members]
        if missing:
            raise InputError(
                f"{origin}: expected arrays named {[*wanted, *keep]}, got "
                f"{sorted(members)} (missing {missing})"
            )
        arrays = {n: _npz_member(source, archive, members[n], origin) for n in wanted}
        kept = {k: _npz_member(source, archive, members[k], origin) for k in keep}
    for name, values in kept.items():
        if values.ndim != 1:
            raise InputError(
                f"{origin}: kept array {name!r}: expected one value per row, got "
                f"shape {values.shape}"
            )
    yield from _array_batches(arrays, specs, kept, origin, batch_rows, allow_nan, max_bytes)


def _npz_member(source: Path, archive: zipfile.ZipFile, member: str, origin: str) -> np.ndarray:
    info = archive.getinfo(member)
    try:
        if info.compress_type == zipfile.ZIP_STORED:
            with open(source, "rb") as handle:
                handle.seek(info.header_offset)
                local = handle.read(30)
                name_length, extra_length = struct.unpack("<HH", local[26:30])
                handle.seek(info.header_offset + 30 + name_length + extra_length)
                major, _ = np.lib.format.read_magic(handle)
                read = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read(handle)
                offset = handle.tell()
            if dtype.hasobject:
                raise ValueError("object arrays need pickle")
            if not shape or int(np.prod(shape)) == 0:
                return np.zeros(shape, dtype=dtype)
            return np.memmap(
                source,
                dtype=dtype,
                mode="r",
                offset=offset,
                shape=shape,
                order="F" if fortran else "C",
            )
        with archive.open(member) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, struct.error) as exc:
        raise InputError(
            f"{origin}: array {member[:-4]!r}: expected a numeric array "
            f"(object arrays are refused), numpy says: {exc}"
        ) from exc


# --- JSON Lines / JSON with nested lists ----------------------------------------------------------


def json_tensor_batches(
    path: Any,
    fmt: str,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Records ``{"<input>": nested list, ...}`` (kept fields alongside), or for a one-input
    model bare nested lists, one sample per line (JSONL) or per list item (JSON)."""
    origin = "<stdin>" if str(path) == "-" else str(path)
    records, word = numbered_records(path, fmt, origin)
    step = rows_for_bytes(
        [sum(int(np.prod(_sample_of(s))) * s.numpy_dtype.itemsize for s in specs)],
        1,
        batch_rows,
        max_bytes,
    )
    for row, group in in_groups(records, step):
        yield _json_batch(group, specs, keep, origin, word, row, allow_nan)


def _json_batch(
    items: list[tuple[int, Any]],
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    origin: str,
    word: str,
    row: int,
    allow_nan: bool,
) -> Batch:
    samples: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    kept: dict[str, list[Any]] = {k: [] for k in keep}
    for number, record in items:
        if isinstance(record, list) and len(specs) == 1 and not keep:
            record = {specs[0].name: record}
        if not isinstance(record, dict):
            raise InputError(
                f"{origin}: {word} {number}: expected an object with the fields "
                f"{[s.name for s in specs]}, got {type(record).__name__}"
            )
        missing = [n for n in [*(s.name for s in specs), *keep] if n not in record]
        if missing:
            raise InputError(
                f"{origin}: {word} {number}: expected the fields "
                f"{[*(s.name for s in specs), *keep]}, got {list(record)} "
                f"(missing {missing})"
            )
        for spec in specs:
            samples[spec.name].append(_sample(record[spec.name], spec, origin, word, number))
        for k in keep:
            kept[k].append(record[k])
    numbers = [number for number, _ in items]
    feeds = {}
    for spec in specs:
        shapes = {a.shape for a in samples[spec.name]}
        if len(shapes) > 1:
            raise InputError(
                f"{origin}: {word}s {numbers[0]}-{numbers[-1]}: input "
                f"{spec.name!r}: expected samples of one shape within a batch, got "
                f"{sorted(shapes)}"
            )
        feeds[spec.name] = fit(
            np.stack(samples[spec.name]), spec, origin, row, allow_nan, word, numbers
        )
    first = feeds[specs[0].name]
    return Batch(first, {k: np.asarray(v, dtype=object) for k, v in kept.items()}, row, feeds)


def _sample(value: Any, spec: TensorSpec, origin: str, word: str, number: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        shown = json.dumps(value)[:60]
        raise InputError(
            f"{origin}: {word} {number}: input {spec.name!r}: expected a "
            f"rectangular nested list of numbers, got {shown}"
        ) from None
    if array.ndim != spec.rank - 1 or any(
        isinstance(want, int) and want != got
        for want, got in zip(spec.shape[1:], array.shape, strict=False)
    ):
        raise InputError(
            f"{origin}: {word} {number}: input {spec.name!r}: expected a sample of "
            f"shape {_sample_text(spec)}, got {array.shape}"
        )
    return array


# --- Parquet with nested list columns -----------------------------------------------------------


def parquet_tensor_batches(
    source: Path,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Samples from Parquet columns of nested lists, one column per input name (a one-input
    model also takes the only list column, whatever its name)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    origin = str(source)
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: expected a Parquet file, pyarrow says: {exc}") from exc
    names = parquet.schema_arrow.names
    repeated = duplicate_names(names)
    if repeated:
        raise InputError(
            f"{origin}: expected each column name once, got {repeated} more than once in {names}"
        )
    columns = {s.name: s.name for s in specs}
    if len(specs) == 1 and specs[0].name not in names:
        lists = [n for n in names if _is_list(parquet.schema_arrow.field(n).type)]
        if len(lists) == 1:
            columns[specs[0].name] = lists[0]
    missing = [c for c in [*columns.values(), *keep] if c not in names]
    if missing:
        raise InputError(
            f"{origin}: expected columns named {[*columns.values(), *keep]}, got "
            f"{names} ({name_mismatch([*columns.values(), *keep], names)})"
        )
    step = rows_for_bytes(
        [sum(int(np.prod(_sample_of(s))) * s.numpy_dtype.itemsize for s in specs)],
        1,
        batch_rows,
        max_bytes,
    )
    row = 0
    for record in parquet.iter_batches(
        batch_size=step, columns=list(dict.fromkeys([*columns.values(), *keep]))
    ):
        feeds = {
            s.name: fit(
                _nested(record.column(columns[s.name]), origin, columns[s.name], row),
                s,
                origin,
                row,
                allow_nan,
            )
            for s in specs
        }
        yield Batch(feeds[specs[0].name], {k: record.column(k) for k in keep}, row, feeds)
        row += record.num_rows


def _is_list(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _nested(column: Any, origin: str, name: str, first_row: int) -> np.ndarray:
    """A column of equal-length nested lists as one ``(rows, d1, d2, ...)`` array."""
    import pyarrow.compute as pc

    from portanet.tables.arrow import to_numpy

    rows = len(column)
    values, dims = column, list[int]()
    while _is_list(values.type):
        if values.null_count:
            raise InputError(
                f"{origin}: column {name!r}: expected nested lists of numbers, "
                f"got a null list near row {first_row}"
            )
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            bad = int(np.argmax(lengths != lengths[0]))
            per_row = int(np.prod(dims, dtype=np.int64)) if dims else 1
            raise InputError(
                f"{origin}: row {first_row + bad // max(per_row, 1)}, column "
                f"{name!r}: expected lists of one length ({int(lengths[0])}), got "
                f"{int(lengths[bad])}"
            )
        dims.append(int(lengths[0]) if len(lengths) else 0)
        values = values.flatten()
    try:
        flat = to_numpy(values)
    except InputError as exc:
        raise InputError(f"{origin}: column {name!r}: {exc}") from exc
    return flat.reshape(rows, *dims)
