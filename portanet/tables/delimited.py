"""CSV and TSV (tab-separated) in line-aligned pieces parsed by ``pyarrow.csv``.

Entry points: :func:`table_batches` (the local engine's feature batches) and :func:`read_rows`
(rows on any pyarrow filesystem, for the Ray engine's read tasks); both judge values with
:mod:`portanet.tables.values`. CSV is a table format only: arrays of any rank need .npy, .npz,
JSON or Parquet.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.tables.types import Batch, Columns, select_columns, slices
from portanet.tables.values import Rows, ValuePolicy, apply, table_rows

#: Bytes of CSV parsed per pyarrow.csv.read_csv call (multi-threaded within each piece).
CSV_CHUNK_BYTES = 16 << 20


def _spool_stdin() -> Path:
    """Copy stdin to a temporary file (disk, not memory) so it can be streamed and rescanned."""
    with tempfile.NamedTemporaryFile(
        prefix="portanet-stdin-", suffix=".csv", delete=False
    ) as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
    return Path(handle.name)


def local_file(path: Any) -> tuple[Any, str]:
    """(pyarrow local filesystem, absolute path) for a path on this machine."""
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), str(Path(path).absolute())


def table_batches(
    path: Any, columns: Columns, batch_rows: int, policy: ValuePolicy, delimiter: str = ","
) -> Iterator[Batch]:
    """Table entry point: stream a CSV (``delimiter`` ``"\t"`` for TSV; ``-`` for stdin) as
    feature batches judged by ``policy``; a header is detected (non-numeric cells)."""
    if str(path) == "-":
        spooled = _spool_stdin()
        try:
            yield from _judged(
                *local_file(spooled), "<stdin>", columns, batch_rows, policy, delimiter
            )
        finally:
            spooled.unlink(missing_ok=True)
    else:
        yield from _judged(*local_file(path), str(path), columns, batch_rows, policy, delimiter)


def _judged(
    fs: Any,
    inner: str,
    origin: str,
    columns: Columns,
    batch_rows: int,
    policy: ValuePolicy,
    delimiter: str,
) -> Iterator[Batch]:
    features: list[str] = []
    for rows in read_rows(fs, inner, origin, columns, batch_rows, delimiter, names_out=features):
        yield apply(rows, features, columns.dtype, policy, origin)


def read_rows(
    fs: Any,
    inner: str,
    origin: str,
    columns: Columns,
    batch_rows: int,
    delimiter: str = ",",
    names_out: list[str] | None = None,
) -> Iterator[Rows]:
    """Ray (and table) entry point: the rows of a CSV on any pyarrow filesystem, parsed by
    ``pyarrow.csv`` in line-aligned pieces (every core within a piece), numbered by line.

    Features are parsed as float64 (a number too large for float32 stays what it is); a piece
    holding a cell that is not a number is parsed again as text, so that the cell costs its row
    a reason, not the file. ``names_out`` receives the feature names in model order.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with fs.open_input_file(inner) as handle:
        head = handle.read(4096)
    if b"\0" in head:
        line = head[: head.index(b"\0")].count(b"\n") + 1
        raise InputError(f"{origin}: expected a text CSV file, got binary data on line {line}")
    first = head.split(b"\n", 1)[0] if b"\n" in head else _first_line(fs, inner)
    has_header, names, columns = read_header(first, origin, columns, delimiter)
    features, keep = select_columns(names, columns, origin)
    if names_out is not None:
        names_out[:] = features
    read_options = pacsv.ReadOptions(column_names=names)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    # Only an empty cell is missing; "nan"/"inf" parse as the float values they name.
    include = list(dict.fromkeys(features + keep))
    fast = pacsv.ConvertOptions(
        column_types={n: pa.float64() for n in features},
        include_columns=include,
        null_values=[""],
        strings_can_be_null=False,
    )
    slow = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in features},
        include_columns=include,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    chunk_bytes = max(CSV_CHUNK_BYTES, int(len(first) * batch_rows * 1.2))
    line = 2 if has_header else 1
    row = 0
    with fs.open_input_file(inner) as handle:
        for text in _line_aligned_chunks(handle, chunk_bytes, skip_first_line=has_header):
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(text),
                    read_options=read_options,
                    parse_options=parse,
                    convert_options=fast,
                )
            except pa.ArrowInvalid:
                try:
                    table = pacsv.read_csv(
                        pa.BufferReader(text),
                        read_options=read_options,
                        parse_options=parse,
                        convert_options=slow,
                    )
                except pa.ArrowInvalid as exc:
                    where = _structure_problem(text, names, line, delimiter)
                    raise InputError(f"{origin}: {where or str(exc).splitlines()[0]}") from exc
            del text
            for record in table.combine_chunks().to_batches():
                for start, stop in slices(record.num_rows, batch_rows):
                    part = record.slice(start, stop - start)
                    count = part.num_rows
                    numbers = np.arange(line, line + count, dtype=np.int64)
                    rows = table_rows(part, features, keep, origin, numbers, row, "line")
                    rows.null_text = "an empty value"
                    yield rows
                    line += count
                    row += count


def _first_line(fs: Any, inner: str) -> bytes:
    with fs.open_input_stream(inner) as stream:
        head = b""
        while b"\n" not in head and len(head) < (1 << 22):
            piece = stream.read(1 << 16)
            if not piece:
                break
            head += piece
    return head.split(b"\n", 1)[0]


def _line_aligned_chunks(handle: Any, size: int, *, skip_first_line: bool) -> Iterator[Any]:
    """The file as Arrow buffers of about ``size`` bytes that end on a line break.

    Each piece is parsed by ``pyarrow.csv.read_csv``, which uses every core; pieces keep memory
    bounded. The pieces are Arrow-native buffers read from a pyarrow file: a Python file
    object handed to the threaded reader is released on an Arrow thread, which needs the GIL
    and aborts the process when that happens during interpreter shutdown (seen here).
    (pyarrow refuses line breaks inside quoted values by default, so cutting at line breaks
    changes nothing it would accept.)
    """
    total = handle.size()
    position = 0
    if skip_first_line:
        position = _next_line_start(handle, 0, total)
    while position < total:
        handle.seek(position)
        piece = handle.read_buffer(min(size, total - position))
        length = piece.size
        if position + length < total:
            cut = _last_line_break(piece)
            if cut < 0:  # one line longer than the piece: take up to its end
                length = _next_line_start(handle, position, total) - position
                handle.seek(position)
                piece = handle.read_buffer(length)
            else:
                length = cut + 1
                piece = piece.slice(0, length)
        yield piece
        position += length


def _last_line_break(buffer: Any) -> int:
    view = memoryview(buffer)
    window = 4096
    while True:
        start = max(0, len(view) - window)
        found = bytes(view[start:]).rfind(b"\n")
        if found >= 0:
            return start + found
        if start == 0:
            return -1
        window *= 8


def _next_line_start(handle: Any, position: int, total: int) -> int:
    """Offset just after the first line break at or after ``position`` (or the end)."""
    step = 1 << 16
    while position < total:
        handle.seek(position)
        found = bytes(memoryview(handle.read_buffer(min(step, total - position)))).find(b"\n")
        if found >= 0:
            return position + found + 1
        position += step
    return total


def read_header(
    first: bytes, origin: str, columns: Columns, delimiter: str = ","
) -> tuple[bool, list[str], Columns]:
    """Read a CSV's first line: whether it is a header (any cell that is not a number), the
    column names (``column_<i>`` without a header), and the columns to select with (by
    position, checked against the model's width, when there is no header)."""
    try:
        text = first.decode("utf-8").strip("\r\n\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{origin}: expected UTF-8 text, got undecodable bytes on line 1") from exc
    if not text.strip():
        raise InputError(f"{origin}: empty file (expected a header line or rows of numbers)")
    cells = next(csv.reader([text], delimiter=delimiter))
    has_header = not all(_is_number(c) for c in cells)
    if has_header:
        names = [c.strip() for c in cells]
    else:
        names = [f"column_{i}" for i in range(len(cells))]
        if columns.keep:
            raise InputError(f"{origin}: kept columns need a header line, got rows of numbers")
        if len(cells) != columns.width:
            raise InputError(
                f"{origin}: line 1: expected {columns.width} columns, got {len(cells)}"
            )
        columns = Columns(None, columns.width, (), columns.dtype, positional=True)
    return has_header, names, columns


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _structure_problem(
    text: Any, names: Sequence[str], first_line: int, delimiter: str
) -> str | None:
    """Name the first line of a piece whose number of cells differs from the header's."""
    lines = bytes(memoryview(text)).decode("utf-8", errors="replace").splitlines()
    for offset, row in enumerate(csv.reader(lines, delimiter=delimiter)):
        if row and len(row) != len(names):
            return (
                f"line {first_line + offset}: expected {len(names)} columns like the "
                f"header, got {len(row)}"
            )
    return None
