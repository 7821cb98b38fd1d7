"""portanet.tables.parquet: files written by pyarrow and pandas, only the needed columns read,
streamed by row group and batch; nulls named by row and column; nested lists for tensor
inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import Columns, iter_batches, iter_tensor_batches, read_all

COLS = Columns(("a", "b", "c"), 3)


def test_parquet_columns_are_picked_by_name(tmp_path):
    pq.write_table(
        pa.table({"b": [2.0, 5.0], "a": [1, 4], "c": [3.0, 6.0]}), tmp_path / "x.parquet"
    )
    assert read_all(tmp_path / "x.parquet", COLS).features.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_pandas_file_of_several_row_groups_streams_in_order(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "c": rng.normal(size=1000).astype(np.float32),
            "id": [f"r{i}" for i in range(1000)],
            "a": rng.integers(0, 100, size=1000),
            "b": rng.uniform(size=1000),
        }
    )
    frame.to_parquet(tmp_path / "x.parquet", row_group_size=300, index=False)
    assert pq.ParquetFile(tmp_path / "x.parquet").num_row_groups == 4
    batches = list(
        iter_batches(tmp_path / "x.parquet", Columns(("a", "b", "c"), 3, ("id",)), batch_rows=128)
    )
    assert max(b.rows for b in batches) <= 128
    assert [b.first_row for b in batches] == sorted(b.first_row for b in batches)
    got = np.concatenate([b.features for b in batches])
    np.testing.assert_array_equal(got, frame[["a", "b", "c"]].to_numpy(np.float32))
    kept = [v for b in batches for v in b.kept["id"].to_pylist()]
    assert kept == frame["id"].tolist()


def test_a_null_is_named_by_row_and_column(tmp_path):
    """Parquet rows are named by their 0-based index in messages, as pandas, pyarrow, numpy and
    the .npy reader count them (the second row here is row 1)."""
    pq.write_table(
        pa.table({"a": [1.0, 2.0, 3.0], "b": [1.0, None, 3.0], "c": [0.0, 0.0, 0.0]}),
        tmp_path / "n.parquet",
    )
    with pytest.raises(
        InputError, match=r"n\.parquet: row 1, column 'b': expected a finite number, got an empty"
    ):
        read_all(tmp_path / "n.parquet", COLS)
    assert np.isnan(read_all(tmp_path / "n.parquet", COLS, allow_nan=True).features[1, 1])


def test_a_missing_column_lists_what_the_file_has(tmp_path):
    pq.write_table(pa.table({"a": [1.0], "b": [2.0], "x": [3.0]}), tmp_path / "m.parquet")
    with pytest.raises(InputError, match=r"m\.parquet: .*missing \['c'\]"):
        read_all(tmp_path / "m.parquet", COLS)


def test_a_file_that_is_not_parquet_names_itself(tmp_path):
    (tmp_path / "t.parquet").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError) as caught:
        read_all(tmp_path / "t.parquet", COLS)
    assert str(tmp_path / "t.parquet") in str(caught.value)


def test_nested_lists_feed_a_tensor_input(tmp_path):
    values = np.random.default_rng(6).normal(size=(7, 3, 2))
    pq.write_table(
        pa.table({"key": list(range(7)), "series": [v.tolist() for v in values]}),
        tmp_path / "s.parquet",
    )
    spec = TensorSpec("window", (None, 3, 2))  # one list column: taken whatever its name
    batches = list(iter_tensor_batches(tmp_path / "s.parquet", [spec], keep=["key"], batch_rows=3))
    got = np.concatenate([b.feeds["window"] for b in batches])
    np.testing.assert_allclose(got, values.astype(np.float32))
    assert [k for b in batches for k in b.kept["key"].to_pylist()] == list(range(7))
    two = [spec, TensorSpec("extra", (None, 2))]
    with pytest.raises(InputError, match=r"expected columns named \['window', 'extra'\]"):
        list(iter_tensor_batches(tmp_path / "s.parquet", two))
