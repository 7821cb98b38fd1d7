"""portanet.tables.readers: one dispatch over the format modules — the reader picked by suffix
(stdin by --stdin-format), paths checked before reading, each entry point refusing the formats
it cannot serve with the format that would; read_all joins the batches."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import Columns, iter_batches, iter_tensor_batches, read_all
from portanet.tables.files import InputFile
from portanet.tables.readers import file_rows, input_format

COLS = Columns(("a", "b", "c"), 3)


def test_the_reader_is_picked_by_suffix_and_stdin_by_its_format():
    assert [input_format(p) for p in ("x.CSV", "x.tab", "x.pq", "x.ndjson", "x.npz", "x.txt")] == [
        "csv",
        "tsv",
        "parquet",
        "jsonl",
        "npz",
        "csv",
    ]
    assert input_format("-", "jsonl") == "jsonl"
    with pytest.raises(
        InputError, match=r"notes\.xlsx: expected one of .*csv.*got suffix '\.xlsx'"
    ):
        input_format("notes.xlsx")
    with pytest.raises(InputError, match=r"got suffix '\(none\)'"):
        input_format("README")


def test_paths_are_checked_before_reading(tmp_path):
    with pytest.raises(InputError, match=r"none\.csv: no such file"):
        list(iter_batches(tmp_path / "none.csv", COLS))
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InputError, match=r"folder\.csv: expected a file, got a directory"):
        list(iter_batches(tmp_path / "folder.csv", COLS))
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="rows per batch: expected a positive number, got 0"):
        list(iter_batches(tmp_path / "x.csv", COLS, batch_rows=0))
    if os.geteuid() != 0:  # root reads any file
        (tmp_path / "x.csv").chmod(0)
        with pytest.raises(InputError, match="permission denied"):
            list(iter_batches(tmp_path / "x.csv", COLS))


def test_an_npz_is_refused_for_a_table_model_and_a_csv_for_a_tensor_model(tmp_path):
    np.savez(tmp_path / "x.npz", features=np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"x\.npz: expected a table .* an \.npz holds arrays"):
        list(iter_batches(tmp_path / "x.npz", COLS))
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    spec = TensorSpec("window", (None, 4, 2))
    with pytest.raises(InputError, match=r"x\.csv: a CSV table fits .* expected \.npy, \.npz"):
        list(iter_tensor_batches(tmp_path / "x.csv", [spec]))


def test_the_ray_entry_point_refuses_memory_mapped_formats_and_json_without_names(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    source = InputFile(str(tmp_path / "x.npy"), "npy", 0)
    with pytest.raises(InputError, match=r"x\.npy: the Ray engine reads csv, .* convert it"):
        list(file_rows(source, COLS, 10, []))
    (tmp_path / "x.jsonl").write_text("[1, 2, 3]\n")
    jsonl = InputFile(str(tmp_path / "x.jsonl"), "jsonl", 0)
    with pytest.raises(InputError, match="matched by feature name, and the model has none"):
        list(file_rows(jsonl, Columns(None, 3), 10, []))


def test_the_ray_entry_point_reads_parquet_rows_in_model_order(tmp_path):
    pq.write_table(pa.table({"c": [3.0, 6.0], "b": [2, 5], "a": [1.0, 4.0]}), tmp_path / "x.pq")
    names: list[str] = []
    parts = list(file_rows(InputFile(str(tmp_path / "x.pq"), "parquet", 0), COLS, 10, names))
    assert names == ["a", "b", "c"]
    assert sum(len(p.numbers) for p in parts) == 2


def test_read_all_joins_batches_and_kept_columns(tmp_path):
    lines = "".join(f"{i},{i * 2},{i * 3},k{i}\n" for i in range(100))
    (tmp_path / "x.csv").write_text("a,b,c,id\n" + lines)
    batch = read_all(tmp_path / "x.csv", Columns(("a", "b", "c"), 3, ("id",)))
    assert batch.features.shape == (100, 3) and batch.features[99].tolist() == [99, 198, 297]
    assert batch.kept["id"].tolist() == [f"k{i}" for i in range(100)]
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    assert read_all(tmp_path / "e.npy", COLS).features.shape == (0, 3)
