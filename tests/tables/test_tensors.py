"""Models that are not one fixed-width table, through `infer`: NPY (memory-mapped), JSONL and
Parquet with nested lists for a rank-3 input, every answer compared with the Keras model itself;
an Embedding model's ids checked against its vocabulary. (NPZ by input name: test_npz.py.)"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import portanet
from portanet.errors import InputError
from portanet.tables.infer import infer_file
from tests.builders import embedding_classifier, sequence_model
from tests.helpers import run_cli

ROWS = 23


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tensor_models")
    return {
        "sequence": sequence_model(folder),
        "embedding": embedding_classifier(folder),
    }


def _keras(model, *arrays):
    return np.asarray(model(list(arrays) if len(arrays) > 1 else arrays[0], training=False))


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rank3_input_from_npy_jsonl_and_parquet(models, tmp_path):
    keras_model, onnx_file = models["sequence"]
    model = portanet.load(onnx_file)
    x = np.random.default_rng(1).normal(size=(ROWS, 6, 3))
    expected = _keras(keras_model, x.astype(np.float32))[:, 0]
    np.save(tmp_path / "x.npy", x)  # float64 on disk, memory-mapped and cast per batch
    name = model.input_names[0]
    (tmp_path / "x.jsonl").write_text(
        "".join(json.dumps({"key": i, name: s.tolist()}) + "\n" for i, s in enumerate(x))
    )
    pq.write_table(
        pa.table({"key": list(range(ROWS)), "window": [s.tolist() for s in x]}),
        tmp_path / "x.parquet",
    )
    for source, keep in (("x.npy", ()), ("x.jsonl", ("key",)), ("x.parquet", ("key",))):
        infer_file(
            model,
            tmp_path / source,
            tmp_path / f"{source}.jsonl",
            keep_columns=keep,
            rows_per_batch=4,
        )
        rows = _jsonl(tmp_path / f"{source}.jsonl")
        assert np.allclose([r["prediction"] for r in rows], expected, atol=1e-5), source
        if keep:
            assert [r["key"] for r in rows] == list(range(ROWS))


def test_nested_lists_of_the_wrong_shape_name_the_line(models, tmp_path):
    _, onnx_file = models["sequence"]
    good = np.zeros((6, 3)).tolist()
    (tmp_path / "x.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(good[:5]) + "\n")
    with pytest.raises(
        InputError, match=r"line 2: .*expected a sample of shape \(6, 3\), got \(5, 3\)"
    ):
        infer_file(portanet.load(onnx_file), tmp_path / "x.jsonl", tmp_path / "o.csv")


def test_a_csv_for_a_rank3_model_says_which_formats_fit(models, tmp_path):
    _, onnx_file = models["sequence"]
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="expected .npy, .npz"):
        infer_file(portanet.load(onnx_file), tmp_path / "x.csv", tmp_path / "o.csv")


def test_embedding_ids_are_checked_against_the_recorded_vocabulary(models):
    keras_model, onnx_file = models["embedding"]
    model = portanet.load(onnx_file)
    assert model.schema.vocabulary == {model.input_names[0]: 50}
    ids = np.array([[1, 2, 3, 4, 5, 49], [0, 0, 7, 7, 9, 9]])
    assert np.allclose(model.predict(ids), _keras(keras_model, ids), atol=1e-6)
    for bad, shown in ((-5, "-5"), (50, "50")):
        wrong = ids.copy()
        wrong[1, 3] = bad
        with pytest.raises(InputError, match=rf"\[0, 50\).*got {shown} in row 1"):
            model.predict(wrong)
        with pytest.raises(InputError, match=rf"got {shown} in row 1"):
            model.predict(wrong.astype(np.float32))  # the fast path for float arrays too


def test_embedding_out_of_range_through_the_cli_is_one_line(models, tmp_path):
    _, onnx_file = models["embedding"]
    rows = [[1, 2, 3, 4, 5, 6]] * 3 + [[1, 2, 99999, 4, 5, 6]]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("infer", str(onnx_file), str(tmp_path / "ids.jsonl"))
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        f"error: {tmp_path / 'ids.jsonl'}: input '{portanet.load(onnx_file).input_names[0]}': "
        f"expected integer ids in [0, 50) (the vocabulary size recorded at export), got 99999 "
        f"in row 3"
    ]
    inspect = run_cli("inspect", str(onnx_file)).stdout.decode()
    assert "50 ids (0..49)" in inspect
