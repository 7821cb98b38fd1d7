"""portanet.tables.delimited: CSV and TSV files (written here by hand, by pandas and by
pyarrow) read by name or position, streamed in batches, every bad cell named by line and column;
the Ray entry point on a pyarrow filesystem numbers the same lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from portanet.errors import InputError
from portanet.tables import Columns, iter_batches, read_all
from portanet.tables.delimited import read_header, read_rows
from portanet.tables.values import ValuePolicy, apply

NAMES = ("a", "b", "c")
COLS = Columns(NAMES, 3)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_columns_are_picked_by_name_in_any_order(tmp_path):
    path = _write(tmp_path, "x.csv", "c,id,a,b\n3,x,1,2\n6,y,4,5\n")
    batch = read_all(path, Columns(NAMES, 3, ("id",)))
    assert batch.features.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batch.kept["id"].tolist() == ["x", "y"]


def test_csv_without_header_is_positional(tmp_path):
    path = _write(tmp_path, "x.csv", "1,2,3\n4,5,6\n")
    assert read_all(path, COLS).features.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_csv_streams_in_batches(tmp_path):
    lines = "\n".join(f"{i},{i},{i}" for i in range(1000))
    path = _write(tmp_path, "x.csv", "a,b,c\n" + lines + "\n")
    batches = list(iter_batches(path, COLS, batch_rows=64))
    assert max(len(b.features) for b in batches) <= 64
    assert np.concatenate([b.features for b in batches])[:, 0].tolist() == list(range(1000))
    assert [b.first_row for b in batches][:2] == [0, 64]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n1,2,3\n4,x,6\n", "line 3, column 'b': expected a number, got 'x'"),
        ("a,b,c\n1,2,3\n4,5\n", "line 3: expected 3 columns"),
        ("a,b\n1,2\n", "missing ['c']"),
        ("1,2\n", "line 1: expected 3 columns, got 2"),
        (
            "a,b,c\n1,,3\n",
            "line 2, column 'b': expected a finite number, got an empty value",
        ),
        ("", "empty file"),
    ],
    ids=[
        "non-numeric",
        "short-row",
        "missing-column",
        "headerless-width",
        "empty-cell",
        "empty-file",
    ],
)
def test_csv_errors_name_line_and_column(tmp_path, text, message):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        read_all(path, COLS)
    assert "bad.csv" in str(info.value)


def test_header_only_csv_gives_no_rows(tmp_path):
    assert read_all(_write(tmp_path, "h.csv", "a,b,c\n"), COLS).features.shape == (0, 3)


# Files written by pandas, read back: the values pandas wrote, in the model's column order.


@pytest.fixture
def frame():
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "name": [f"row {i}, quoted" for i in range(50)],  # commas force pandas to quote
            "c": rng.normal(size=50),
            "a": rng.integers(-1000, 1000, size=50),
            "b": rng.uniform(0, 1e6, size=50),
        }
    )


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_file_written_by_pandas_is_read_in_model_order(tmp_path, frame, suffix, sep):
    path = tmp_path / f"x{suffix}"
    frame.to_csv(path, index=False, sep=sep)
    batch = read_all(path, Columns(NAMES, 3, ("name",)))
    expected = frame[list(NAMES)].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(batch.features, expected)
    assert batch.kept["name"].tolist() == frame["name"].tolist()


def test_a_tsv_given_as_csv_is_one_column_and_says_so(tmp_path, frame):
    """A tab-separated file with a .csv suffix is read with commas, and the message shows why."""
    path = tmp_path / "tabs.csv"
    frame[list(NAMES)].to_csv(path, index=False, sep="\t")
    with pytest.raises(InputError, match=r"tabs\.csv.*missing \['a', 'b', 'c'\]"):
        read_all(path, COLS)


def test_the_first_line_is_a_header_unless_every_cell_is_a_number(tmp_path, frame):
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    first = path.read_bytes().split(b"\n", 1)[0]
    has_header, names, columns = read_header(first, str(path), COLS)
    assert has_header and names == list(frame.columns) and columns == COLS
    has_header, names, columns = read_header(b"1,2.5,-3e4", "n.csv", COLS)
    assert not has_header and names == ["column_0", "column_1", "column_2"]
    assert columns.positional and columns.feature_names is None
    with pytest.raises(InputError, match="n.csv: kept columns need a header line"):
        read_header(b"1,2,3", "n.csv", Columns(NAMES, 3, ("id",)))


def test_the_ray_entry_point_numbers_the_lines_the_local_reader_names(tmp_path):
    """read_rows on a pyarrow filesystem: rows by line number, a bad cell costs its row a
    reason (judged by the same policy), the others keep their values."""
    path = _write(tmp_path, "r.csv", "a,b,c\n1,2,3\n4,five,6\n7,8,9\n")
    names: list[str] = []
    parts = list(read_rows(pafs.LocalFileSystem(), str(path), str(path), COLS, 2, ",", names))
    assert names == list(NAMES)
    numbers = np.concatenate([np.asarray(p.numbers) for p in parts]).tolist()
    assert numbers == [2, 3, 4]
    skip = ValuePolicy(on_error="skip")
    judged = [apply(p, names, np.float32, skip, str(path)) for p in parts]
    features = np.concatenate([j.features for j in judged])
    assert features.tolist() == [[1, 2, 3], [7, 8, 9]]
    rejected = [(r.number, r.reason) for j in judged for r in j.rejected]
    assert rejected == [(3, "column 'b': expected a number, got 'five'")]
    with pytest.raises(InputError, match=r"r\.csv: line 3, column 'b': expected a number"):
        for part in read_rows(pafs.LocalFileSystem(), str(path), str(path), COLS, 2, ","):
            apply(part, names, np.float32, ValuePolicy(), str(path))
