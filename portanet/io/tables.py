"""Format-specific batch readers behind :func:`portanet.io.iter_batches`."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.io.arrow import to_numpy
from portanet.io.readers import Batch, Columns, check_finite, json_records, locate_csv_problem

#: Bytes of CSV parsed per pyarrow.csv.read_csv call (multi-threaded within each piece).
CSV_CHUNK_BYTES = 16 << 20


def _select(names: Sequence[str], columns: Columns, origin: str) -> tuple[list[str], list[str]]:
    """Feature columns (in model order) and kept columns among a file's column ``names``."""
    keep_missing = [k for k in columns.keep if k not in names]
    if keep_missing:
        raise InputError(f"{origin}: --keep-columns names {keep_missing}, which the input does "
                         f"not have (columns: {list(names)})")
    if columns.feature_names:
        missing = [n for n in columns.feature_names if n not in names]
        if missing:
            raise InputError(f"{origin}: expected the feature columns "
                             f"{list(columns.feature_names)}, got {list(names)} "
                             f"(missing {missing})")
        return list(columns.feature_names), list(columns.keep)
    features = [n for n in names if n not in columns.keep]
    if len(features) != columns.width:
        raise InputError(f"{origin}: expected {columns.width} feature columns (the model has no "
                         f"feature names, so every column counts), got {len(features)}: "
                         f"{features}")
    return features, list(columns.keep)


def _matrix(arrays: Sequence[Any], rows: int, dtype: np.dtype) -> np.ndarray:
    out = np.empty((rows, len(arrays)), dtype=dtype)
    for index, array in enumerate(arrays):
        out[:, index] = array
    return out


def _slices(total: int, batch_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, batch_rows):
        yield start, min(start + batch_rows, total)


def _spool_stdin() -> Path:
    """Copy stdin to a temporary file (disk, not memory) so it can be streamed and rescanned."""
    handle = tempfile.NamedTemporaryFile(prefix="portanet-stdin-", suffix=".csv", delete=False)
    with handle:
        shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
    return Path(handle.name)


def csv_batches(path: Any, columns: Columns, batch_rows: int, allow_nan: bool) -> Iterator[Batch]:
    """Stream a CSV with ``pyarrow.csv.open_csv``; a header is detected (non-numeric cells)."""
    if str(path) == "-":
        spooled = _spool_stdin()
        try:
            yield from _csv_file(spooled, "<stdin>", columns, batch_rows, allow_nan)
        finally:
            spooled.unlink(missing_ok=True)
    else:
        yield from _csv_file(Path(path), str(path), columns, batch_rows, allow_nan)


def _csv_file(source: Path, origin: str, columns: Columns, batch_rows: int,
              allow_nan: bool) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(source, "rb") as handle:
        head = handle.read(4096)
        handle.seek(0)
        first = handle.readline()
    if b"\0" in head:
        line = head[: head.index(b"\0")].count(b"\n") + 1
        raise InputError(f"{origin}: expected a text CSV file, got binary data on line {line}")
    try:
        text = first.decode("utf-8").strip("\r\n\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{origin}: expected UTF-8 text, got undecodable bytes on line 1") from exc
    if not text.strip():
        raise InputError(f"{origin}: empty file (expected a header line or rows of numbers)")
    cells = next(csv.reader([text]))
    has_header = not all(_is_number(c) for c in cells)
    if has_header:
        names = [c.strip() for c in cells]
    else:
        names = [f"column_{i}" for i in range(len(cells))]
        if columns.keep:
            raise InputError(f"{origin}: --keep-columns needs a header line, got rows of numbers")
        if len(cells) != columns.width:
            raise InputError(f"{origin}: line 1: expected {columns.width} columns, "
                             f"got {len(cells)}")
        columns = Columns(None, columns.width, (), columns.dtype)
    features, keep = _select(names, columns, origin)
    read_options = pacsv.ReadOptions(column_names=names)
    # Only an empty cell is missing; "nan"/"inf" parse as the float values they name.
    convert = pacsv.ConvertOptions(column_types={n: pa.float32() for n in features},
                                   include_columns=features + keep, null_values=[""],
                                   strings_can_be_null=False)
    chunk_bytes = max(CSV_CHUNK_BYTES, int(len(first) * batch_rows * 1.2))
    line = 2 if has_header else 1
    row = 0
    try:
        for text in _line_aligned_chunks(source, chunk_bytes, skip_first_line=has_header):
            table = pacsv.read_csv(pa.BufferReader(text), read_options=read_options,
                                   convert_options=convert).combine_chunks()
            del text
            for record in table.to_batches():
                for start, stop in _slices(record.num_rows, batch_rows):
                    part = record.slice(start, stop - start)
                    matrix = _matrix([to_numpy(part.column(n)) for n in features],
                                     part.num_rows, columns.dtype)
                    if not allow_nan:
                        check_finite(matrix, features, origin, line)
                    yield Batch(matrix, {k: part.column(k) for k in keep}, row)
                    line += part.num_rows
                    row += part.num_rows
    except pa.ArrowInvalid as exc:
        where = locate_csv_problem(source, features)
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


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parquet_batches(source: Path, columns: Columns, batch_rows: int,
                    allow_nan: bool) -> Iterator[Batch]:
    """Stream a Parquet file with ``ParquetFile.iter_batches`` over the needed columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    origin = str(source)
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: expected a Parquet file, pyarrow says: {exc}") from exc
    features, keep = _select(parquet.schema_arrow.names, columns, origin)
    for name in features:
        kind = parquet.schema_arrow.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)):
            raise InputError(f"{origin}: column {name!r}: expected numbers, got {kind} values")
    row = 0
    for record in parquet.iter_batches(batch_size=batch_rows, columns=features + keep):
        matrix = _matrix([to_numpy(record.column(n)) for n in features], record.num_rows,
                         columns.dtype)
        if not allow_nan:
            check_finite(matrix, features, origin, row + 1, "row")
        yield Batch(matrix, {k: record.column(k) for k in keep}, row)
        row += record.num_rows


def json_batches(path: Any, fmt: str, columns: Columns, batch_rows: int,
                 allow_nan: bool) -> Iterator[Batch]:
    """JSON Lines (one record or row per line) or a JSON document with a list of them."""
    origin = "<stdin>" if str(path) == "-" else str(path)
    if fmt == "json":
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        records: Any = enumerate(json_records(text, origin), start=1)
        word = "record"
    else:
        stream = sys.stdin if str(path) == "-" else open(path, encoding="utf-8")
        records = _jsonl_records(stream, origin)
        word = "line"
    pending: list[tuple[int, Any]] = []
    row = 0
    for item in records:
        pending.append(item)
        if len(pending) >= batch_rows:
            yield _records_batch(pending, columns, origin, row, word, allow_nan)
            row += len(pending)
            pending = []
    if pending:
        yield _records_batch(pending, columns, origin, row, word, allow_nan)


def _jsonl_records(stream: io.TextIOBase, origin: str) -> Iterator[tuple[int, Any]]:
    with stream:
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{origin}: line {number}: expected a JSON object or list, "
                                 f"got invalid JSON ({exc.msg})") from exc


def _records_batch(items: list[tuple[int, Any]], columns: Columns, origin: str, row: int,
                   word: str, allow_nan: bool) -> Batch:
    names = columns.feature_names
    matrix = np.empty((len(items), columns.width), dtype=columns.dtype)
    kept: dict[str, list[Any]] = {k: [] for k in columns.keep}
    for index, (number, record) in enumerate(items):
        if isinstance(record, dict):
            if names is None:
                raise InputError(f"{origin}: {word} {number}: named fields need feature names "
                                 f"in the model metadata; give rows as lists instead")
            missing = [n for n in names if n not in record]
            if missing:
                raise InputError(f"{origin}: {word} {number}: expected the fields {list(names)}"
                                 f", got {list(record)} (missing {missing})")
            values = [record[n] for n in names]
            for k in columns.keep:
                if k not in record:
                    raise InputError(f"{origin}: {word} {number}: --keep-columns field {k!r} "
                                     f"is missing")
                kept[k].append(record[k])
        elif isinstance(record, list):
            if columns.keep:
                raise InputError(f"{origin}: {word} {number}: --keep-columns needs records "
                                 f"with named fields, got a list")
            if len(record) != columns.width:
                raise InputError(f"{origin}: {word} {number}: expected {columns.width} values, "
                                 f"got {len(record)}")
            values = record
        else:
            raise InputError(f"{origin}: {word} {number}: expected an object or a list, "
                             f"got {type(record).__name__}")
        for col, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) and value is not None:
                name = names[col] if names else f"column_{col}"
                raise InputError(f"{origin}: {word} {number}, column {name!r}: expected a "
                                 f"number, got {json.dumps(value)[:40]}")
            matrix[index, col] = np.nan if value is None else value
    if not allow_nan and not np.isfinite(matrix).all():
        bad, col = map(int, np.argwhere(~np.isfinite(matrix))[0])
        name = names[col] if names else f"column_{col}"
        shown = "null" if np.isnan(matrix[bad, col]) else f"{matrix[bad, col]}"
        raise InputError(f"{origin}: {word} {items[bad][0]}, column {name!r}: expected a "
                         f"finite number, got {shown} (use --allow-nan to pass NaN/Inf through)")
    return Batch(matrix, {k: np.asarray(v) for k, v in kept.items()}, row)


def npy_batches(source: Path, columns: Columns, batch_rows: int,
                allow_nan: bool) -> Iterator[Batch]:
    """Rows of a memory-mapped ``.npy`` array (never unpickled)."""
    origin = str(source)
    if columns.keep:
        raise InputError(f"{origin}: --keep-columns needs named columns; .npy arrays have none")
    with open(source, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        raise InputError(f"{origin}: expected a .npy file (starting with \\x93NUMPY), got "
                         f"leading bytes {magic!r}")
    try:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{origin}: expected a numeric .npy array, got one that needs pickle "
                         f"(object arrays are refused): {exc}") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{origin}: expected a .npy file, numpy cannot read it: {exc}") from exc
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != columns.width:
        raise InputError(f"{origin}: expected an array of shape (rows, {columns.width}), "
                         f"got {array.shape}")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{origin}: expected a numeric array, got dtype {array.dtype}")
    names = columns.feature_names or [f"column_{i}" for i in range(columns.width)]
    for start, stop in _slices(array.shape[0], batch_rows):
        matrix = np.asarray(array[start:stop], dtype=columns.dtype)
        if not allow_nan:
            check_finite(matrix, names, origin, start, "row")
        yield Batch(matrix, {}, start)
