import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portanet.errors import InputError
from portanet.tables import Columns, iter_batches, open_writer, read_all

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


def test_npy_is_memory_mapped_and_never_unpickled(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    assert read_all(tmp_path / "x.npy", COLS).features.dtype == np.float32
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickle"):
        read_all(tmp_path / "o.npy", COLS)
    np.save(tmp_path / "w.npy", np.zeros((2, 5)))
    with pytest.raises(InputError, match=r"shape \(rows, 3\)"):
        read_all(tmp_path / "w.npy", COLS)


def test_parquet_and_jsonl_and_json(tmp_path):
    pq.write_table(
        pa.table({"b": [2.0, 5.0], "a": [1, 4], "c": [3.0, 6.0]}), tmp_path / "x.parquet"
    )
    assert read_all(tmp_path / "x.parquet", COLS).features.tolist() == [[1, 2, 3], [4, 5, 6]]
    _write(tmp_path, "x.jsonl", '{"a": 1, "b": 2, "c": 3}\n[4, 5, 6]\n')
    assert read_all(tmp_path / "x.jsonl", COLS).features.tolist() == [[1, 2, 3], [4, 5, 6]]
    _write(tmp_path, "x.json", '[{"c": 3, "b": 2, "a": 1}]')
    assert read_all(tmp_path / "x.json", COLS).features.tolist() == [[1, 2, 3]]
    _write(tmp_path, "bad.jsonl", '{"a": 1, "b": "two", "c": 3}\n')
    with pytest.raises(InputError, match="line 1, column 'b': expected a number"):
        read_all(tmp_path / "bad.jsonl", COLS)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".npy"])
def test_writers_round_trip(tmp_path, suffix):
    target = tmp_path / f"out{suffix}"
    with open_writer(target) as writer:
        writer.write({"probability": np.array([0.25, 0.75]), "label": np.array([0, 1])})
        writer.write({"probability": np.array([0.5]), "label": np.array([1])})
    if suffix == ".npy":
        assert np.load(target).tolist() == [[0.25, 0], [0.75, 1], [0.5, 1]]
    else:
        back = read_all(target, Columns(("probability", "label"), 2))
        assert back.features.tolist() == [[0.25, 0], [0.75, 1], [0.5, 1]]


def test_a_failing_writer_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), open_writer(target) as writer:
        writer.write({"p": np.array([1.0])})
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
