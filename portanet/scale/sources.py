"""Input files for the Ray engine: listed as the local engine lists them
(:mod:`portanet.tables.files`) and read in Ray read tasks by the format modules' Ray entry point
(:func:`portanet.tables.readers.file_rows`), judged by the shared value policy
(:mod:`portanet.tables.values`), as float32 feature blocks that remember their file and line.

The read tasks are a :class:`ray.data.Datasource` of one task per file. Every block carries the
kept columns, the features (float32) and three internal columns
(:data:`~portanet.tables.values.INTERNAL_COLUMNS`): the file, the row's number in it and the
reason the row is bad (null when it is fine), so that a bad value is reported by file and line
however the rows are later batched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from portanet.errors import PortanetError
from portanet.scale.ledger import report
from portanet.tables.files import InputFile, filesystem, list_inputs
from portanet.tables.readers import file_rows
from portanet.tables.types import Columns
from portanet.tables.values import ERROR_COLUMN, FILE_COLUMN, ROW_COLUMN, screen

__all__ = ["InputFile", "files_datasource", "filesystem", "list_inputs", "read_file"]


def read_file(
    index: int,
    source: InputFile,
    columns: Columns,
    rows_per_batch: int,
    ledger: Any = None,
    allow_nan: bool = False,
) -> Iterator[Any]:
    """Blocks of one input file: kept columns, float32 features and the internal columns.

    A :class:`PortanetError` is reported to ``ledger`` (a Ray actor handle) before it is raised.
    """
    try:
        yield from _blocks(index, source, columns, rows_per_batch, allow_nan)
    except PortanetError as exc:
        report(ledger, exc)
        raise


def _blocks(
    index: int, source: InputFile, columns: Columns, rows_per_batch: int, allow_nan: bool
) -> Iterator[Any]:
    import pyarrow as pa

    from portanet.tables.arrow import from_numpy

    features: list[str] = []
    for rows in file_rows(source, columns, rows_per_batch, features):
        count = rows.count
        if count == 0:
            continue
        matrix, reasons = screen(rows, features, np.float32, allow_nan)
        kept = [from_numpy(v) if isinstance(v, np.ndarray) else v for v in rows.kept.values()]
        arrays = (
            kept
            + [from_numpy(np.ascontiguousarray(matrix[:, c])) for c in range(len(features))]
            + [
                pa.array(np.full(count, index, dtype=np.int32)),
                from_numpy(np.asarray(rows.numbers, dtype=np.int64)),
                pa.nulls(count, pa.string()) if reasons is None else pa.array(reasons, pa.string()),
            ]
        )
        names = list(rows.kept) + list(features) + [FILE_COLUMN, ROW_COLUMN, ERROR_COLUMN]
        yield pa.Table.from_arrays(arrays, names=names)


def files_datasource(
    files: Sequence[InputFile],
    columns: Columns,
    rows_per_batch: int,
    ledger: Any = None,
    allow_nan: bool = False,
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
                read = functools.partial(
                    read_file, index, source, columns, rows_per_batch, ledger, allow_nan
                )
                tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
            return tasks

    return PortanetFiles()
