"""Streaming prediction writers (CSV, Parquet, JSONL, NPY, or CSV on stdout), atomic on disk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from portanet._files import atomic_path
from portanet.errors import InputError
from portanet.tables.arrow import from_numpy

OUTPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".npy": "npy",
}


def output_format(path: str | os.PathLike[str] | None) -> str:
    """The writer for an output path by suffix; ``None`` or ``-`` means CSV on stdout."""
    if path is None or str(path) == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InputError(
            f"{path}: expected an output suffix among "
            f"{', '.join(sorted(OUTPUT_FORMATS))}, got {suffix or '(none)'!r}"
        )
    return OUTPUT_FORMATS[suffix]


class ColumnWriter:
    """Writes column batches (dict name → 1-D array) in order."""

    def __init__(self, fmt: str, stream: BinaryIO | str) -> None:
        self.fmt = fmt
        # Arrow writers get a path when there is one: they then write through Arrow's own
        # file, never holding a Python object that an Arrow thread would have to release.
        self.stream = stream
        self._arrow: Any = None
        self._npy_rows = 0
        self._npy_cols: int | None = None

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Append one batch of rows."""
        if self.fmt == "jsonl":
            self._write_jsonl(columns)
        elif self.fmt == "npy":
            self._write_npy(columns)
        else:
            self._write_arrow(columns)

    def _write_arrow(self, columns: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        table = pa.Table.from_arrays([from_numpy(v) for v in columns.values()], names=list(columns))
        if self._arrow is None:
            if self.fmt == "csv":
                import pyarrow.csv as pacsv

                plain = all(re.fullmatch(r"[A-Za-z0-9_.\-]+", n) for n in table.column_names)
                options = pacsv.WriteOptions(quoting_header="none" if plain else "needed")
                self._arrow = pacsv.CSVWriter(self.stream, table.schema, write_options=options)
            else:
                import pyarrow.parquet as pq

                # Dictionary-encoding float predictions (nearly all distinct) only costs time:
                # 1M rows wrote in 0.07 s with it, 0.024 s without.
                encoded = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
                self._arrow = pq.ParquetWriter(
                    self.stream, table.schema, use_dictionary=encoded or False
                )
        self._arrow.write_table(table)

    def _write_jsonl(self, columns: dict[str, np.ndarray]) -> None:
        names = list(columns)
        lists = [
            columns[n].to_pylist()  # type: ignore[attr-defined]  # an Arrow array here
            if hasattr(columns[n], "to_pylist")
            else np.asarray(columns[n]).tolist()
            for n in names
        ]
        lines = [
            json.dumps(dict(zip(names, values, strict=False)))
            for values in zip(*lists, strict=False)
        ]
        assert not isinstance(self.stream, str)  # a path only for the Arrow writers
        if lines:
            self.stream.write(("\n".join(lines) + "\n").encode())

    def _write_npy(self, columns: dict[str, np.ndarray]) -> None:
        values = list(columns.values())
        matrix = np.empty((len(values[0]) if values else 0, len(values)), dtype=np.float32)
        for index, column in enumerate(values):
            matrix[:, index] = column
        self._npy_cols = matrix.shape[1]
        self._npy_rows += matrix.shape[0]
        assert not isinstance(self.stream, str)  # a path only for the Arrow writers
        self.stream.write(matrix.data.cast("B"))  # no copy

    def close(self) -> None:
        """Finish the file (Parquet footer, CSV buffers)."""
        if self._arrow is not None:
            self._arrow.close()


@contextlib.contextmanager
def open_writer(path: str | os.PathLike[str] | None) -> Iterator[ColumnWriter]:
    """A writer for ``path`` (atomic: nothing appears unless every batch was written).

    ``None`` or ``-`` writes CSV to stdout. NPY output holds every prediction column as float32.
    """
    fmt = output_format(path)
    if path is None or str(path) == "-":
        writer = ColumnWriter(fmt, sys.stdout.buffer)
        yield writer
        writer.close()
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: expected an output file path, got a directory")
    with atomic_path(target) as temporary:
        if fmt == "npy":
            with open(temporary, "wb") as stream:
                stream.write(b"\0" * NPY_HEADER_BYTES)  # filled in once the row count is known
                writer = ColumnWriter(fmt, stream)
                yield writer
                stream.seek(0)
                stream.write(npy_header(writer._npy_rows, writer._npy_cols or 0))
        elif fmt in ("csv", "parquet"):
            writer = ColumnWriter(fmt, str(temporary))
            yield writer
            writer.close()
            if writer._arrow is None:  # nothing written: still leave a (empty) file
                temporary.write_bytes(b"")
        else:
            with open(temporary, "wb") as stream:
                writer = ColumnWriter(fmt, stream)
                yield writer
                writer.close()


#: Bytes reserved for the header of an NPY output (any row count fits).
NPY_HEADER_BYTES = 128


def npy_header(rows: int, cols: int) -> bytes:
    """An NPY 1.0 header for a C-order float32 ``rows × cols`` array, padded with spaces to
    :data:`NPY_HEADER_BYTES` (numpy reads any header length; 64-byte multiples keep the data
    aligned), so that it can be written before the rows and filled in after them."""
    text = repr(
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": (rows, cols),
        }
    )
    prefix = np.lib.format.MAGIC_PREFIX + bytes([1, 0])
    size = NPY_HEADER_BYTES - len(prefix) - 2
    body = text.encode("latin1").ljust(size - 1) + b"\n"
    return prefix + size.to_bytes(2, "little") + body
