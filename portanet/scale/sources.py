"""Input files for the Ray engine: list them (files, folders, globs, any pyarrow URI) and read
them in Ray read tasks as float32 feature blocks that remember their file and line.

The read tasks are a :class:`ray.data.Datasource` of one task per file. Every block carries the
kept columns, the features (float32; a text cell that is not a number becomes null with a
reason) and three internal columns (:data:`~portanet.scale.values.INTERNAL_COLUMNS`) so that a
bad value can be reported by file and line however the rows are later batched.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from portanet.errors import InputError, PortanetError
from portanet.scale.ledger import report
from portanet.scale.values import ERROR_COLUMN, FILE_COLUMN, ROW_COLUMN, numeric_features
from portanet.tables.delimited import read_header
from portanet.tables.types import Columns, select_columns

#: Input formats by suffix, and the word that numbers their rows in messages.
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
ROW_WORDS = {"parquet": "row", "csv": "line", "jsonl": "record"}
#: Bytes parsed per CSV / JSONL block inside a read task.
TEXT_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class InputFile:
    """One input file: its path or URI as the user wrote it, its format and its size."""

    path: str
    fmt: str
    size: int

    @property
    def row_word(self) -> str:
        """``line`` for CSV, ``row`` for Parquet, ``record`` for JSONL."""
        return ROW_WORDS[self.fmt]


def _filesystem(location: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, path inside it, prefix that turns such a path back into a URI)."""
    import pyarrow.fs as pafs

    if "://" not in location:
        location = os.path.abspath(location)
    try:
        fs, inner = pafs.FileSystem.from_uri(location)
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{location}: expected a local path or a URI that pyarrow's "
            f"filesystems understand, got an error: {exc}"
        ) from exc
    at = location.rfind(inner) if inner else -1
    prefix = location[:at] if at > 0 else ""
    return fs, inner, prefix


def _format_of(path: str) -> str | None:
    return FORMATS.get(os.path.splitext(path)[1].lower())


def list_inputs(inputs: Sequence[str]) -> list[InputFile]:
    """Every input file named by ``inputs`` (files, folders searched recursively, globs).

    Folders contribute the files with a known suffix (names starting with ``.`` or ``_``
    skipped); a file named directly must have a known suffix. Raises :class:`InputError` when an
    input does not exist or nothing is found.
    """
    import pyarrow.fs as pafs

    if not inputs:
        raise InputError("expected at least one input file, folder or glob, got none")
    found: dict[str, InputFile] = {}
    for given in inputs:
        if any(c in given for c in "*?["):
            first = min(given.index(c) for c in "*?[" if c in given)
            base = given[: given.rfind("/", 0, first) + 1] or "."
            fs, inner, prefix = _filesystem(base)
            pattern = inner.rstrip("/") + "/" + given[len(base) :]
            infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True))
            matched = [
                i
                for i in infos
                if i.type == pafs.FileType.File
                and fnmatch.fnmatchcase(i.path, pattern)
                and _format_of(i.path)
                and not _hidden(i.path, inner)
            ]
            if not matched:
                raise InputError(
                    f"{given}: expected the pattern to match .parquet, .csv or "
                    f".jsonl files, got no match"
                )
        else:
            fs, inner, prefix = _filesystem(given)
            info = fs.get_file_info(inner)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{given}: no such file or folder")
            if info.type == pafs.FileType.Directory:
                infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
                matched = [
                    i
                    for i in infos
                    if i.type == pafs.FileType.File
                    and _format_of(i.path)
                    and not _hidden(i.path, inner)
                ]
                if not matched:
                    raise InputError(
                        f"{given}: expected a folder holding .parquet, .csv or "
                        f".jsonl files, got none"
                    )
            else:
                if not _format_of(inner):
                    raise InputError(
                        f"{given}: expected a .parquet, .csv or .jsonl file, got "
                        f"suffix {os.path.splitext(inner)[1] or '(none)'!r}"
                    )
                matched = [info]
        for item in matched:
            path = prefix + item.path
            found[path] = InputFile(path, _format_of(item.path) or "", int(item.size or 0))
    return [found[k] for k in sorted(found)]


def _hidden(path: str, root: str) -> bool:
    relative = path[len(root) :].strip("/")
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def read_file(
    index: int, source: InputFile, columns: Columns, rows_per_batch: int, ledger: Any = None
) -> Iterator[Any]:
    """Blocks of one input file: kept columns, float32 features and the internal columns.

    A :class:`PortanetError` is reported to ``ledger`` (a Ray actor handle) before it is raised.
    """
    try:
        yield from _blocks(index, source, columns, rows_per_batch)
    except PortanetError as exc:
        report(ledger, exc)
        raise


def _blocks(index: int, source: InputFile, columns: Columns, rows_per_batch: int) -> Iterator[Any]:
    import pyarrow as pa

    fs, inner, _ = _filesystem(source.path)
    if source.fmt == "parquet":
        batches, features, keep, first = _parquet(fs, inner, source.path, columns, rows_per_batch)
    elif source.fmt == "csv":
        batches, features, keep, first = _csv(fs, inner, source.path, columns)
    else:
        batches, features, keep, first = _jsonl(fs, inner, source.path, columns)
    number = first
    for batch in batches:
        rows = batch.num_rows
        if rows == 0:
            continue
        values, errors = numeric_features(batch, features, source.path)
        arrays = (
            [batch.column(k) for k in keep]
            + values
            + [
                pa.array(np.full(rows, index, dtype=np.int32)),
                pa.array(np.arange(number, number + rows, dtype=np.int64)),
                errors,
            ]
        )
        names = list(keep) + list(features) + [FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN]
        number += rows
        yield pa.Table.from_arrays(arrays, names=names)


def _parquet(
    fs: Any, inner: str, origin: str, columns: Columns, rows_per_batch: int
) -> tuple[Iterator[Any], list[str], list[str], int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(fs.open_input_file(inner))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{origin}: expected a Parquet file, pyarrow says: {exc}") from exc
    features, keep = select_columns(parquet.schema_arrow.names, columns, origin)
    batches = parquet.iter_batches(batch_size=rows_per_batch, columns=features + keep)
    return batches, features, keep, 1


def _first_line(fs: Any, inner: str) -> bytes:
    with fs.open_input_stream(inner) as stream:
        head = b""
        while b"\n" not in head and len(head) < (1 << 22):
            piece = stream.read(1 << 16)
            if not piece:
                break
            head += piece
    return head.split(b"\n", 1)[0]


def _csv(
    fs: Any, inner: str, origin: str, columns: Columns
) -> tuple[Iterator[Any], list[str], list[str], int]:

    import pyarrow as pa
    import pyarrow.csv as pacsv

    has_header, names, columns = read_header(_first_line(fs, inner), origin, columns)
    features, keep = select_columns(names, columns, origin)
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if has_header else 0, block_size=TEXT_BLOCK_BYTES
    )
    # Features arrive as text: a cell that is not a number then costs its row, not the file.
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in features},
        include_columns=features + keep,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(
            fs.open_input_stream(inner), read_options=read, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{origin}: expected CSV, pyarrow says: {exc}") from exc
    return _guarded(reader, origin), features, keep, 2 if has_header else 1


def _jsonl(
    fs: Any, inner: str, origin: str, columns: Columns
) -> tuple[Iterator[Any], list[str], list[str], int]:
    import pyarrow as pa
    import pyarrow.json as pajson

    if not columns.feature_names:
        raise InputError(
            f"{origin}: JSON Lines records are matched by feature name, and the model has none"
        )
    schema = pa.schema([(n, pa.float64()) for n in columns.feature_names])
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    try:
        reader = pajson.open_json(
            fs.open_input_stream(inner),
            parse_options=parse,
            read_options=pajson.ReadOptions(block_size=TEXT_BLOCK_BYTES),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(
            f"{origin}: expected JSON Lines records with numeric features, pyarrow says: {exc}"
        ) from exc
    names = list(reader.schema.names)
    features, keep = select_columns(names, columns, origin)
    return _guarded(reader, origin), features, keep, 1


def _guarded(reader: Any, origin: str) -> Iterator[Any]:
    import pyarrow as pa

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise InputError(
                f"{origin}: pyarrow cannot parse the file: {str(exc).splitlines()[0]}"
            ) from exc
        yield batch


def files_datasource(
    files: Sequence[InputFile], columns: Columns, rows_per_batch: int, ledger: Any = None
) -> Any:
    """A :class:`ray.data.Datasource` with one read task per file (imports Ray)."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class PortanetFiles(Datasource):
        """portanet's input files as feature blocks that remember file and line."""

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(f.size for f in files) or None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[Any]:
            tasks = []
            for index, source in enumerate(files):
                meta = BlockMetadata(
                    num_rows=None,
                    size_bytes=source.size or None,
                    input_files=(source.path,),
                    exec_stats=None,
                )
                read = functools.partial(read_file, index, source, columns, rows_per_batch, ledger)
                tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
            return tasks

    return PortanetFiles()
