"""The one value policy: what a bad value is, and fail vs skip — judged the same for every
format, and for the local engine and the Ray read tasks (which call the same functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portanet.errors import InputError
from portanet.tables import Columns, iter_batches
from portanet.tables.files import list_inputs
from portanet.tables.readers import file_rows
from portanet.tables.values import Rows, ValuePolicy, apply, float_column, screen

NAMES = ["a", "b", "c"]
COLS = Columns(tuple(NAMES), 3)


def _rows(values: np.ndarray, missing=None) -> Rows:
    return Rows(values, np.arange(2, 2 + len(values)), 0, word="line", missing=missing)


@pytest.mark.parametrize(
    "value, allow_nan, reason",
    [
        (1e39, False, "column 'b': expected a number, got 1e+39, outside float32 range"),
        (1e39, True, "column 'b': expected a number, got 1e+39, outside float32 range"),
        (np.inf, False, "column 'b': expected a finite number, got inf"),
        (np.nan, False, "column 'b': expected a finite number, got NaN"),
        (np.inf, True, None),
        (np.nan, True, None),
        (2.5, False, None),
    ],
    ids=["overflow", "overflow-allow-nan", "inf", "nan", "inf-allowed", "nan-allowed", "fine"],
)
def test_each_kind_of_value_is_judged_once(value, allow_nan, reason):
    values = np.array([[1.0, 2.0, 3.0], [4.0, value, 6.0]])
    matrix, reasons = screen(_rows(values), NAMES, np.float32, allow_nan)
    assert matrix.dtype == np.float32
    got = None if reasons is None else reasons[1]
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(reason)
        assert reasons[0] is None


def test_fail_names_the_line_and_skip_sets_the_row_aside():
    values = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0], [7.0, 8.0, 1e39]])
    missing = [None, np.array([False, True, False]), None]
    with pytest.raises(InputError, match="f.csv: line 3, column 'b': expected a finite number"):
        apply(_rows(values, missing), NAMES, np.float32, ValuePolicy(), "f.csv")
    batch = apply(_rows(values, missing), NAMES, np.float32, ValuePolicy(on_error="skip"), "f.csv")
    assert batch.features.tolist() == [[1.0, 2.0, 3.0]]
    assert [(r.file, r.word, r.number) for r in batch.rejected] == [
        ("f.csv", "line", 3),
        ("f.csv", "line", 4),
    ]
    assert batch.rejected[0].reason.startswith("column 'b': expected a finite number, got an empty")
    assert "1e+39, outside float32 range" in batch.rejected[1].reason
    with pytest.raises(InputError, match="on error: expected one of fail, skip"):
        ValuePolicy(on_error="ignore")


def _write_formats(folder: Path, bad: str) -> list[Path]:
    """The same three rows (the second one bad) as CSV, JSONL and Parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.csv").write_text(f"a,b,c\n1,2,3\n4,{bad},6\n7,8,9\n")
    json_bad = '"two"' if bad == "two" else bad
    (folder / "x.jsonl").write_text(
        '{"a": 1, "b": 2, "c": 3}\n'
        f'{{"a": 4, "b": {json_bad}, "c": 6}}\n'
        '{"a": 7, "b": 8, "c": 9}\n'
    )
    column = ["2", bad, "8"] if bad == "two" else [2.0, float(bad), 8.0]
    pq.write_table(pa.table({"a": [1, 4, 7], "b": column, "c": [3, 6, 9]}), folder / "x.parquet")
    return [folder / "x.csv", folder / "x.jsonl", folder / "x.parquet"]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("two", "column 'b': expected a number, got "),
        ("1e39", "column 'b': expected a number, got 1e+39, outside float32 range"),
    ],
    ids=["wrong-type", "overflow"],
)
def test_local_reader_and_ray_entry_point_agree_for_every_format(tmp_path, bad, reason):
    """The Ray read tasks' entry point (file_rows + screen) gives the reason the local
    engine's skip mode gives, for CSV, JSONL and Parquet — a wrong-typed JSONL value costs its
    row, not the file — and 1e39 is refused even with allow_nan, by both."""
    for path in _write_formats(tmp_path, bad):
        local = list(iter_batches(path, COLS, policy=ValuePolicy(allow_nan=True, on_error="skip")))
        assert sum(b.rows for b in local) == 2, path
        rejected = [r for b in local for r in b.rejected]
        assert len(rejected) == 1 and rejected[0].reason.startswith(reason), (path, rejected)
        (source,) = list_inputs([str(path)])
        names: list[str] = []
        ray_rows = list(file_rows(source, COLS, 1000, names))
        _, reasons = screen(ray_rows[0], names, np.float32, True)
        assert reasons is not None and reasons[1] is not None and reasons[1].startswith(reason)
        assert reasons[0] is None and reasons[2] is None
        assert rejected[0].number == int(ray_rows[0].numbers[1])


def test_text_cells_become_float64_with_a_reason_for_each_non_number():
    values, reasons = float_column(
        pa.array(["1.5", " 2", "abc", None, "nan", "-1e3"]), "x", "f.csv"
    )
    assert values.type == pa.float64()  # float64: 1e39 is seen as what it is, not inf
    assert values.to_pylist()[:2] == [1.5, 2.0]
    assert values[2].as_py() is None and values[3].as_py() is None
    assert np.isnan(values[4].as_py()) and values[5].as_py() == -1000.0
    assert reasons == [None, None, "column 'x': expected a number, got 'abc'", None, None, None]
    clean, none = float_column(pa.array([1, 2], pa.int64()), "x", "f.csv")
    assert clean.type == pa.float64() and none is None
    with pytest.raises(InputError, match="column 'x': expected numbers, got timestamp"):
        float_column(pa.array([0], pa.timestamp("s")), "x", "f.parquet")
