"""CSV and TSV (tab-separated) in line-aligned pieces parsed by ``pyarrow.csv``."""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from portanet.errors import InputError
from portanet.tables.arrow import to_numpy
from portanet.tables.types import Batch, Columns, check_finite, matrix_of, select_columns, slices

#: Bytes of CSV parsed per pyarrow.csv.read_csv call (multi-threaded within each piece).
CSV_CHUNK_BYTES = 16 << 20


def _spool_stdin() -> Path:
    """Copy stdin to a temporary file (disk, not memory) so it can be streamed and rescanned."""
    with tempfile.NamedTemporaryFile(
        prefix="portanet-stdin-", suffix=".csv", delete=False
    ) as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
    return Path(handle.name)


def csv_batches(
    path: Any, columns: Columns, batch_rows: int, allow_nan: bool, delimiter: str = ","
) -> Iterator[Batch]:
    """Stream a CSV (``delimiter`` ``"\t"`` for TSV) with ``pyarrow.csv``; a header is detected
    (non-numeric cells)."""
    if str(path) == "-":
        spooled = _spool_stdin()
        try:
            yield from _csv_file(spooled, "<stdin>", columns, batch_rows, allow_nan, delimiter)
        finally:
            spooled.unlink(missing_ok=True)
    else:
        yield from _csv_file(Path(path), str(path), columns, batch_rows, allow_nan, delimiter)


def _csv_file(
    source: Path, origin: str, columns: Columns, batch_rows: int, allow_nan: bool, delimiter: str
) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(source, "rb") as handle:
        head = handle.read(4096)
        handle.seek(0)
        first = handle.readline()
    if b"\0" in head:
        line = head[: head.index(b"\0")].count(b"\n") + 1
        raise InputError(f"{origin}: expected a text CSV file, got binary data on line {line}")
    has_header, names, columns = read_header(first, origin, columns, delimiter)
    features, keep = select_columns(names, columns, origin)
    read_options = pacsv.ReadOptions(column_names=names)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    # Only an empty cell is missing; "nan"/"inf" parse as the float values they name.
    convert = pacsv.ConvertOptions(
        column_types={n: pa.float32() for n in features},
        include_columns=list(dict.fromkeys(features + keep)),
        null_values=[""],
        strings_can_be_null=False,
    )
    chunk_bytes = max(CSV_CHUNK_BYTES, int(len(first) * batch_rows * 1.2))
    line = 2 if has_header else 1
    row = 0
    try:
        for text in _line_aligned_chunks(source, chunk_bytes, skip_first_line=has_header):
            table = pacsv.read_csv(
                pa.BufferReader(text),
                read_options=read_options,
                parse_options=parse,
                convert_options=convert,
            ).combine_chunks()
            del text
            for record in table.to_batches():
                for start, stop in slices(record.num_rows, batch_rows):
                    part = record.slice(start, stop - start)
                    matrix = matrix_of(
                        [to_numpy(part.column(n)) for n in features], part.num_rows, columns.dtype
                    )
                    check_finite(
                        matrix,
                        features,
                        origin,
                        line,
                        allow_nan=allow_nan,
                        overflowed=lambda at, col: _overflowed(
                            source, at, names.index(features[col]), delimiter, columns.dtype
                        ),
                    )
                    yield Batch(matrix, {k: part.column(k) for k in keep}, row)
                    line += part.num_rows
                    row += part.num_rows
    except pa.ArrowInvalid as exc:
        where = locate_csv_problem(source, features, delimiter)
        detail = where or str(exc).splitlines()[0]
        raise InputError(f"{origin}: {detail}") from exc


def _line_aligned_chunks(source: Path, size: int, *, skip_first_line: bool) -> Iterator[Any]:
    """The file as Arrow buffers of about ``size`` bytes that end on a line break.

    Each piece is parsed by ``pyarrow.csv.read_csv``, which uses every core; pieces keep memory
    bounded. The pieces are Arrow-native buffers read with ``pyarrow.OSFile``: a Python file
    object handed to the threaded reader is released on an Arrow thread, which needs the GIL
    and aborts the process when that happens during interpreter shutdown (seen here).
    (pyarrow refuses line breaks inside quoted values by default, so cutting at line breaks
    changes nothing it would accept.)
    """
    import pyarrow as pa

    with pa.OSFile(str(source), "rb") as handle:
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


def _overflowed(source: Path, line: int, column: int, delimiter: str, dtype: Any) -> str | None:
    """``got 1e39, outside float32 range`` when the cell at ``line`` (1-based) that parsed as
    ±inf holds a finite number too large for ``dtype``; ``None`` when it says inf itself."""
    import numpy as np

    with open(source, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if number == line:
                text = row[column].strip() if column < len(row) else ""
                try:
                    value = float(text)
                except ValueError:
                    return None
                if np.isfinite(value):
                    return f"{text}, outside {np.dtype(dtype).name} range"
                return None
    return None


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


def locate_csv_problem(path: Path, names: Sequence[str], delimiter: str = ",") -> str | None:
    """Scan a CSV with the csv module to name the first line/column that pyarrow refused."""
    wanted = set(names)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                return (
                    f"line {line}: expected {len(header)} columns like the header, got {len(row)}"
                )
            for name, value in zip(header, row, strict=False):
                if name in wanted and value.strip() not in ("",):
                    try:
                        float(value)
                    except ValueError:
                        return (
                            f"line {line}, column {name!r}: expected a number, got {value[:40]!r}"
                        )
    return None
