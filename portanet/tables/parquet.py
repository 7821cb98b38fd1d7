"""Parquet through ``pyarrow.parquet.ParquetFile.iter_batches`` over the needed columns.

Entry points: :func:`table_batches` (a table model's feature batches), :func:`read_rows` (rows
on any pyarrow filesystem, for the Ray engine's read tasks) and :func:`tensor_batches` (nested
list columns for inputs of any rank). Values are judged by :mod:`portanet.tables.values`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError, name_mismatch
from portanet.schema import TensorSpec
from portanet.tables.tensors import fit, rows_for_bytes, sample_of
from portanet.tables.types import Batch, Columns, duplicate_names, select_columns
from portanet.tables.values import Rows, ValuePolicy, apply, table_rows


def _open(source: Any, origin: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: expected a Parquet file, pyarrow says: {exc}") from exc


def table_batches(
    source: Path, columns: Columns, batch_rows: int, policy: ValuePolicy
) -> Iterator[Batch]:
    """Table entry point: a Parquet file's feature batches (rows numbered from 1), judged by
    ``policy``."""
    import pyarrow.fs as pafs

    origin = str(source)
    features: list[str] = []
    fs, inner = pafs.LocalFileSystem(), str(Path(source).absolute())
    for rows in read_rows(fs, inner, origin, columns, batch_rows, names_out=features):
        yield apply(rows, features, columns.dtype, policy, origin)


def read_rows(
    fs: Any,
    inner: str,
    origin: str,
    columns: Columns,
    batch_rows: int,
    names_out: list[str] | None = None,
) -> Iterator[Rows]:
    """Ray (and table) entry point: the rows of a Parquet file on any pyarrow filesystem, only
    the needed columns read; numbers, booleans and numeric text are taken (text that is not a
    number costs its row a reason). ``names_out`` receives the feature names in model order."""
    import pyarrow as pa

    try:
        handle = fs.open_input_file(inner)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: cannot open the file: {exc}") from exc
    with handle:
        parquet = _open(handle, origin)
        features, keep = select_columns(parquet.schema_arrow.names, columns, origin)
        for name in features:
            kind = parquet.schema_arrow.field(name).type
            if not (
                pa.types.is_integer(kind)
                or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind)
                or pa.types.is_null(kind)
                or pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
            ):
                raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
        if names_out is not None:
            names_out[:] = features
        row = 0
        for record in parquet.iter_batches(
            batch_size=batch_rows, columns=list(dict.fromkeys(features + keep))
        ):
            count = record.num_rows
            numbers = np.arange(row, row + count, dtype=np.int64)  # row indices, as pyarrow's
            yield table_rows(record, features, keep, origin, numbers, row, "row")
            row += count


# --- tensor entry point: nested list columns ------------------------------------------------------


def tensor_batches(
    source: Path,
    specs: Sequence[TensorSpec],
    keep: Sequence[str],
    batch_rows: int,
    allow_nan: bool,
    max_bytes: int,
) -> Iterator[Batch]:
    """Samples from Parquet columns of nested lists, one column per input name (a one-input
    model also takes the only list column, whatever its name)."""
    origin = str(source)
    parquet = _open(source, origin)
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
        [sum(int(np.prod(sample_of(s))) * s.numpy_dtype.itemsize for s in specs)],
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
