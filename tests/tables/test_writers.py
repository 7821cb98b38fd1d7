"""portanet.tables.writers: every output format read back by its own library (pyarrow, pandas,
json, numpy); atomic on disk; the NPY header written before the rows is one numpy reads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from portanet.errors import InputError
from portanet.tables import Columns, open_writer, read_all
from portanet.tables.arrow import names_array
from portanet.tables.writers import NPY_HEADER_BYTES, npy_header, output_format


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


def _batches():
    labels = ["negative", "positive"]
    mask = np.array([False, True, False])
    return [
        {
            "id": pa.array(["a", "b", "c"]),
            "probability": np.array([0.1, np.nan, 0.9], dtype=np.float32),
            "label": names_array(np.array([0, 0, 1]), labels, mask),
        },
        {
            "id": pa.array(["d"]),
            "probability": np.array([0.7], dtype=np.float32),
            "label": names_array(np.array([1]), labels),
        },
    ]


def test_parquet_keeps_types_and_nulls_for_pyarrow_and_pandas(tmp_path):
    with open_writer(tmp_path / "o.parquet") as writer:
        for batch in _batches():
            writer.write(batch)
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column_names == ["id", "probability", "label"]
    assert table.schema.field("probability").type == pa.float32()
    assert table.column("label").to_pylist() == ["negative", None, "positive", "positive"]
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert frame["id"].tolist() == ["a", "b", "c", "d"]
    assert np.isnan(frame["probability"][1]) and frame["probability"][3] == np.float32(0.7)


def test_jsonl_is_one_json_object_per_line_with_null_for_no_label(tmp_path):
    with open_writer(tmp_path / "o.ndjson") as writer:
        for batch in _batches():
            writer.write(batch)
    rows = [json.loads(line) for line in (tmp_path / "o.ndjson").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["label"] for r in rows] == ["negative", None, "positive", "positive"]
    assert rows[0]["probability"] == pytest.approx(0.1, abs=1e-7)


def test_csv_quotes_only_headers_that_need_it(tmp_path):
    with open_writer(tmp_path / "plain.csv") as writer:
        writer.write({"p_1": np.array([1.5]), "label.x": np.array([2])})
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == "p_1,label.x"
    with open_writer(tmp_path / "odd.csv") as writer:
        writer.write({"probability_a,b": np.array([0.5]), "label": np.array([1])})
    frame = pd.read_csv(tmp_path / "odd.csv")
    assert frame.columns.tolist() == ["probability_a,b", "label"]
    assert pacsv.read_csv(tmp_path / "odd.csv").column("probability_a,b").to_pylist() == [0.5]


def test_nothing_written_still_leaves_an_empty_file(tmp_path):
    for name in ("e.csv", "e.parquet", "e.jsonl"):
        with open_writer(tmp_path / name):
            pass
        assert (tmp_path / name).read_bytes() == b"", name
    with open_writer(tmp_path / "e.npy"):
        pass
    assert np.load(tmp_path / "e.npy").shape == (0, 0)


def test_csv_on_stdout_for_dash(capfdbinary):
    with open_writer("-") as writer:
        writer.write({"probability": np.array([0.25]), "label": np.array([1])})
    assert capfdbinary.readouterr().out.decode().splitlines() == ["probability,label", "0.25,1"]


@pytest.mark.parametrize("rows, cols", [(0, 0), (3, 2), (10**12, 7)])
def test_the_npy_header_is_read_by_numpy(tmp_path, rows, cols):
    header = npy_header(rows, cols)
    assert len(header) == NPY_HEADER_BYTES and NPY_HEADER_BYTES % 64 == 0
    path = tmp_path / "h.npy"
    path.write_bytes(header)
    with open(path, "rb") as handle:
        assert np.lib.format.read_magic(handle) == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    assert (shape, fortran, dtype) == ((rows, cols), False, np.dtype(np.float32))


def test_output_format_by_suffix_and_refusals(tmp_path):
    assert [output_format(p) for p in (None, "-", "a.PQ", "b.ndjson", "c.npy")] == [
        "csv",
        "csv",
        "parquet",
        "jsonl",
        "npy",
    ]
    with pytest.raises(InputError, match=r"out\.xlsx: expected an output suffix among .*\.csv"):
        output_format("out.xlsx")
    (tmp_path / "folder.csv").mkdir()
    refused = pytest.raises(InputError, match=r"expected an output file path, got a directory")
    with refused, open_writer(tmp_path / "folder.csv"):
        pass
