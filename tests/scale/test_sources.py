"""The Ray read tasks' blocks and the worker pool rules: pure pyarrow, no Ray cluster needed.
(Input listing: tests/tables/test_files.py; the value policy: tests/tables/test_values.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portanet.cli.infer import parse_workers
from portanet.errors import InputError
from portanet.scale.engine import _resolve_workers
from portanet.scale.predictor import Workers
from portanet.scale.sources import list_inputs, read_file
from portanet.tables.types import Columns
from portanet.tables.values import ERROR_COLUMN, ROW_COLUMN
from tests.scale.conftest import FEATURES, write_inputs


def test_read_blocks_number_csv_lines_and_parquet_rows(tmp_path: Path):
    csv_path, parquet_path = write_inputs(tmp_path, 10, 2)[::-1]
    text = csv_path.read_text().splitlines()
    cells = text[4].split(",")
    cells[2] = "n/a"  # line 5, a feature column
    text[4] = ",".join(cells)
    csv_path.write_text("\n".join(text) + "\n")
    columns = Columns(tuple(FEATURES), 8, ("id",), np.dtype(np.float32))
    files = list_inputs([str(csv_path), str(parquet_path)])
    csv_file = next(f for f in files if f.fmt == "csv")
    table = pa.concat_tables(read_file(7, csv_file, columns, 3))
    assert table.column(ROW_COLUMN).to_pylist() == list(range(2, 7))  # header is line 1
    assert table.column("_portanet_file").to_pylist() == [7] * 5
    errors = table.column(ERROR_COLUMN).to_pylist()
    name = text[0].split(",")[2].strip('"')
    assert errors == [None, None, None, f"column {name!r}: expected a number, got 'n/a'", None]
    parquet_file = next(f for f in files if f.fmt == "parquet")
    table = pa.concat_tables(read_file(0, parquet_file, columns, 2))
    assert table.column(ROW_COLUMN).to_pylist() == [0, 1, 2, 3, 4]  # row indices
    assert table.column("id").to_pylist() == pq.read_table(parquet_path)["id"].to_pylist()
    assert all(table.schema.field(n).type == pa.float32() for n in FEATURES)


def test_worker_pools_leave_cpus_for_reading_and_writing():
    assert _resolve_workers(None, None, 2.0) == Workers(2, 2, 0.5)
    assert _resolve_workers(None, None, 16.0) == Workers(8, 8, 1.0)
    assert _resolve_workers((1, 6), 2.0, 16.0) == Workers(1, 6, 2.0)
    assert Workers(1, 1, 3.6).threads == 4
    with pytest.raises(InputError, match="would take all 2 CPUs of the cluster"):
        _resolve_workers(2, 1.0, 2.0)
    with pytest.raises(InputError, match="expected 1 <= min <= max"):
        _resolve_workers((3, 2), None, 16.0)


@pytest.mark.parametrize("text, expected", [("3", 3), ("1,4", (1, 4)), (None, None)])
def test_workers_option(text, expected):
    assert parse_workers(text) == expected


def test_workers_option_refuses_other_shapes():
    with pytest.raises(InputError, match="--workers: expected N or MIN,MAX"):
        parse_workers("two")
