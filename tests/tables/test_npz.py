"""portanet.tables.npz: archives written by ``np.savez`` (memory-mapped members) and
``np.savez_compressed`` (read whole), one array per input name, 1-D arrays for kept columns;
the answers of a two-input model compared with the Keras model itself; object arrays, missing
names and files that are not archives refused by name."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import portanet
from portanet.errors import InputError
from portanet.schema import TensorSpec
from portanet.tables import iter_tensor_batches
from portanet.tables.infer import infer_file
from portanet.tables.npz import _npz_member
from tests.builders import two_input_model

ROWS = 23
SPECS = [TensorSpec("sequence", (None, 5, 3)), TensorSpec("extra", (None, 4))]


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    return two_input_model(tmp_path_factory.mktemp("npz_models"))


def _keras(model, *arrays):
    return np.asarray(model(list(arrays) if len(arrays) > 1 else arrays[0], training=False))


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_npz_feeds_a_two_input_model_by_name(two_inputs, tmp_path, compressed):
    keras_model, onnx_file = two_inputs
    rng = np.random.default_rng(0)
    sequence = rng.normal(size=(ROWS, 5, 3)).astype(np.float32)
    extra = rng.normal(size=(ROWS, 4)).astype(np.float32)
    ids = np.array([f"s{i}" for i in range(ROWS)])
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "in.npz", extra=extra, sequence=sequence, id=ids)
    result = infer_file(
        portanet.load(onnx_file),
        tmp_path / "in.npz",
        tmp_path / "o.jsonl",
        keep_columns=["id"],
        rows_per_batch=5,
    )
    assert result.rows == ROWS
    rows = _jsonl(tmp_path / "o.jsonl")
    got = np.array([[r["prediction_0"], r["prediction_1"]] for r in rows])
    assert np.allclose(got, _keras(keras_model, sequence, extra), atol=1e-5)
    assert [r["id"] for r in rows] == ids.tolist()


def test_npz_missing_an_input_names_it(two_inputs, tmp_path):
    _, onnx_file = two_inputs
    np.savez(tmp_path / "in.npz", sequence=np.zeros((2, 5, 3), np.float32))
    with pytest.raises(InputError, match=r"missing \['extra'\]"):
        infer_file(portanet.load(onnx_file), tmp_path / "in.npz", tmp_path / "o.csv")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_arrays_by_input_name_stream_in_batches(tmp_path, save):
    rng = np.random.default_rng(5)
    sequence, extra = rng.normal(size=(11, 5, 3)), rng.normal(size=(11, 4)).astype(np.float32)
    save(tmp_path / "x.npz", extra=extra, sequence=sequence, id=np.arange(11) * 10)
    batches = list(iter_tensor_batches(tmp_path / "x.npz", SPECS, keep=["id"], batch_rows=4))
    assert [b.first_row for b in batches] == [0, 4, 8]
    got = {n: np.concatenate([b.feeds[n] for b in batches]) for n in ("sequence", "extra")}
    np.testing.assert_array_equal(got["sequence"], sequence.astype(np.float32))
    np.testing.assert_array_equal(got["extra"], extra)
    assert [int(v) for b in batches for v in b.kept["id"]] == list(range(0, 110, 10))


def test_stored_members_are_memory_mapped_where_numpy_put_them(tmp_path):
    values = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    np.savez(tmp_path / "x.npz", a=values, f=np.asfortranarray(values))
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:
        mapped = _npz_member(tmp_path / "x.npz", archive, "a.npy", "x")
        fortran = _npz_member(tmp_path / "x.npz", archive, "f.npy", "x")
    assert isinstance(mapped, np.memmap) and isinstance(fortran, np.memmap)
    np.testing.assert_array_equal(mapped, np.load(tmp_path / "x.npz")["a"])
    np.testing.assert_array_equal(fortran, values)


def test_a_single_input_model_takes_the_only_array_whatever_its_name(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.ones((3, 4)), id=np.arange(3))
    spec = TensorSpec("input_1", (None, 4))
    batches = list(iter_tensor_batches(tmp_path / "x.npz", [spec], keep=["id"]))
    assert batches[0].feeds["input_1"].shape == (3, 4)
    np.savez(tmp_path / "two.npz", a=np.ones((3, 4)), b=np.ones((3, 4)))
    with pytest.raises(InputError, match=r"expected an array named 'input_1' \(or a single"):
        list(iter_tensor_batches(tmp_path / "two.npz", [spec]))


@pytest.mark.parametrize(
    "arrays, keep, message",
    [
        (
            {"sequence": np.array([{"a": 1}] * 2, dtype=object), "extra": np.zeros((2, 4))},
            [],
            "array 'sequence': expected a numeric array \\(object arrays are refused\\)",
        ),
        (
            {"sequence": np.zeros((2, 5, 3)), "extra": np.zeros((2, 4)), "id": np.zeros((2, 2))},
            ["id"],
            "kept array 'id': expected one value per row, got shape \\(2, 2\\)",
        ),
        ({"sequence": np.zeros((2, 5, 3))}, [], r"missing \['extra'\]"),
    ],
    ids=["object-array", "kept-2d", "missing-input"],
)
def test_what_cannot_be_read_surely_is_refused(tmp_path, arrays, keep, message):
    np.savez(tmp_path / "bad.npz", **arrays, allow_pickle=True)
    with pytest.raises(InputError, match=message) as caught:
        list(iter_tensor_batches(tmp_path / "bad.npz", SPECS, keep=keep))
    assert str(tmp_path / "bad.npz") in str(caught.value)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((2, 4)))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    with pytest.raises(InputError, match=r"plain\.npz: expected an \.npz archive"):
        list(iter_tensor_batches(tmp_path / "plain.npz", SPECS))
