"""portanet.tables.npy: ``.npy`` files written by numpy, memory-mapped, never unpickled; rows of
a table model numbered from 0, samples of any rank for a tensor model."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import Columns, iter_batches, iter_tensor_batches, read_all
from portanet.tables.npy import open_npy

COLS = Columns(("a", "b", "c"), 3)


def test_npy_is_memory_mapped_and_never_unpickled(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    assert read_all(tmp_path / "x.npy", COLS).features.dtype == np.float32
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickle"):
        read_all(tmp_path / "o.npy", COLS)
    np.save(tmp_path / "w.npy", np.zeros((2, 5)))
    with pytest.raises(InputError, match=r"shape \(rows, 3\)"):
        read_all(tmp_path / "w.npy", COLS)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64, np.bool_])
def test_every_numeric_dtype_and_fortran_order_give_numpys_values(tmp_path, dtype):
    values = (np.arange(30).reshape(10, 3) % 7).astype(dtype)
    np.save(tmp_path / "c.npy", values)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    for name in ("c.npy", "f.npy"):
        batches = list(iter_batches(tmp_path / name, COLS, batch_rows=4))
        assert [b.first_row for b in batches] == [0, 4, 8]
        got = np.concatenate([b.features for b in batches])
        np.testing.assert_array_equal(got, values.astype(np.float32), err_msg=name)


def test_the_file_stays_on_disk_as_a_memory_map(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1000, 3), np.float32))
    array = open_npy(tmp_path / "x.npy")
    assert isinstance(array.base, np.memmap) or isinstance(array, np.memmap)
    assert not array.flags.writeable


def test_a_bad_value_is_named_by_row_and_column(tmp_path):
    values = np.ones((6, 3))
    values[4, 1] = np.inf
    np.save(tmp_path / "x.npy", values)
    with pytest.raises(InputError, match=r"x\.npy: row 4, column 'b': expected a finite number"):
        read_all(tmp_path / "x.npy", COLS)
    assert np.isinf(read_all(tmp_path / "x.npy", COLS, allow_nan=True).features[4, 1])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a,b,c\n1,2,3\n", r"expected a \.npy file \(starting with \\x93NUMPY\), got leading"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr'", "expected a .npy file, numpy cannot read it"),
    ],
    ids=["text", "truncated"],
)
def test_a_file_that_is_not_npy_is_refused_by_name(tmp_path, content, message):
    (tmp_path / "x.npy").write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_all(tmp_path / "x.npy", COLS)
    assert str(tmp_path / "x.npy") in str(caught.value)


def test_kept_columns_need_names(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(InputError, match="kept columns need named columns"):
        read_all(tmp_path / "x.npy", Columns(("a", "b", "c"), 3, ("id",)))


def test_samples_of_any_rank_for_a_tensor_model(tmp_path):
    values = np.random.default_rng(2).normal(size=(9, 4, 2))
    np.save(tmp_path / "x.npy", values)
    spec = TensorSpec("window", (None, 4, 2))
    batches = list(iter_tensor_batches(tmp_path / "x.npy", [spec], batch_rows=4))
    got = np.concatenate([b.feeds["window"] for b in batches])
    np.testing.assert_array_equal(got, values.astype(np.float32))
    two = [spec, TensorSpec("extra", (None, 3))]
    with pytest.raises(InputError, match=r"needs one array per input, expected an \.npz"):
        list(iter_tensor_batches(tmp_path / "x.npy", two))
