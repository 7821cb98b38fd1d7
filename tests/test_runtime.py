import numpy as np
import pyarrow as pa
import pytest

import portanet
from conftest import COMMITTED_ONNX, need
from portanet.datasets import PIMA_FEATURES, load_pima
from portanet.errors import InputError, ModelLoadError


@pytest.fixture(scope="module")
def model():
    return portanet.load(need(COMMITTED_ONNX))


@pytest.fixture(scope="module")
def rows():
    return load_pima().features[:20]


def test_schema_and_providers(model):
    assert model.input_names == ["features"] and model.output_names == ["probability"]
    assert model.feature_names == PIMA_FEATURES
    assert model.schema.task == "binary_classifier" and model.schema.threshold == 0.5
    assert model.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("shape", ["array", "float64", "int", "list", "dict", "shuffled-dict",
                                   "arrow-table", "single-row"])
def test_every_input_form_gives_the_same_predictions(model, rows, shape):
    expected = model.predict(rows)
    columns = {n: rows[:, i] for i, n in enumerate(PIMA_FEATURES)}
    x = {
        "array": rows, "float64": rows.astype(np.float64), "list": rows.tolist(),
        "int": np.round(rows).astype(np.int64), "dict": columns,
        "shuffled-dict": dict(reversed(list(columns.items()))),
        "arrow-table": pa.table(columns), "single-row": rows[0].tolist(),
    }[shape]
    got = model.predict(x)
    if shape == "int":
        expected = model.predict(np.round(rows))
    if shape == "single-row":
        expected = expected[:1]
    assert np.allclose(got, expected, atol=1e-7)


def test_large_batches_are_chunked_into_one_output(rows):
    model = portanet.load(COMMITTED_ONNX)
    model.chunk_rows = 7
    x = np.tile(rows, (5, 1))
    whole = portanet.load(COMMITTED_ONNX).predict(x)
    assert np.array_equal(model.predict(x), whole)


def test_labels_follow_the_threshold(model, rows):
    p = model.predict(rows)
    assert np.array_equal(model.labels_for(p), (p[:, 0] >= 0.5).astype(np.int64))


def test_empty_batch_gives_empty_result(model):
    assert model.predict(np.empty((0, 8), dtype=np.float32)).shape == (0, 1)


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 7)), "expected size 8 on axis 1"),
    (np.zeros((2, 8, 1)), "expected 2 dimensions"),
    ([["a"] * 8], "expected numbers"),
    (np.array([[1.0] * 7 + [np.nan]]), "expected finite numbers, got nan in row 0"),
    ({"glucose": [1.0]}, "missing"),
    ({**{n: [1.0] for n in PIMA_FEATURES}, "outcome": [1.0]}, "unknown"),
], ids=["width", "rank", "strings", "nan", "missing-column", "unknown-column"])
def test_bad_input_is_an_input_error(model, x, message):
    with pytest.raises(InputError, match=message):
        model.predict(x)


def test_allow_nan_passes_nan_through(model):
    out = model.predict(np.full((1, 8), np.nan, dtype=np.float32), allow_nan=True)
    assert np.isnan(out).all()


def test_loading_bad_files_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        portanet.load(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        portanet.load(junk)
