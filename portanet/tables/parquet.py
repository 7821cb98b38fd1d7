"""Parquet through ``pyarrow.parquet.ParquetFile.iter_batches`` over the needed columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from portanet.errors import InputError
from portanet.tables.arrow import to_numpy
from portanet.tables.types import Batch, Columns, check_finite, matrix_of, select_columns


def parquet_batches(
    source: Path, columns: Columns, batch_rows: int, allow_nan: bool
) -> Iterator[Batch]:
    """Stream a Parquet file with ``ParquetFile.iter_batches`` over the needed columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    origin = str(source)
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: expected a Parquet file, pyarrow says: {exc}") from exc
    features, keep = select_columns(parquet.schema_arrow.names, columns, origin)
    for name in features:
        kind = parquet.schema_arrow.field(name).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
    row = 0
    for record in parquet.iter_batches(batch_size=batch_rows, columns=features + keep):
        matrix = matrix_of(
            [to_numpy(record.column(n)) for n in features],
            record.num_rows,
            columns.dtype,
            features,
            origin,
            row + 1,
            "row",
        )
        if not allow_nan:
            check_finite(matrix, features, origin, row + 1, "row")
        yield Batch(matrix, {k: record.column(k) for k in keep}, row)
        row += record.num_rows
