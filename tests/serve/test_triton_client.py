"""The stock Triton HTTP client against a real `portanet serve` process: health, metadata, and
inference equal to `portanet.load(...).predict` bit for bit, JSON and binary data both ways."""

from __future__ import annotations

import numpy as np
import pytest

import portanet
from tests.serve.conftest import PIMA, need_module, pima_rows

httpclient = need_module("tritonclient.http")


@pytest.fixture(scope="module")
def client(pima_server):
    client = httpclient.InferenceServerClient(pima_server.url)
    yield client
    client.close()


def _pima_infer(
    client, rows: np.ndarray, *, binary_in: bool, binary_out: bool | None, request_id: str = ""
):
    tensor = httpclient.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary_in)
    outputs = (
        None
        if binary_out is None
        else [httpclient.InferRequestedOutput("probability", binary_data=binary_out)]
    )
    return client.infer("pima_mlp", [tensor], outputs=outputs, request_id=request_id)


def test_server_and_model_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("pima_mlp")
    assert client.is_model_ready("pima_mlp", "1")
    assert not client.is_model_ready("no_such_model")
    meta = client.get_server_metadata()
    assert meta["name"] == "portanet" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_comes_from_the_schema(client, pima):
    meta = client.get_model_metadata("pima_mlp")
    assert meta["name"] == "pima_mlp" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}]
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}]
    params = meta["parameters"]
    assert params["feature_names"] == list(pima.feature_names)
    assert params["task"] == "binary_classifier"
    assert params["portanet.parity"]["passed"] is True
    assert params["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(httpclient.InferenceServerException, match="no_such_model"):
        client.get_model_metadata("no_such_model")


@pytest.mark.parametrize("count", [1, 7, 1000])
@pytest.mark.parametrize(
    "binary_in,binary_out",
    [(False, False), (True, True), (True, None), (False, True)],
    ids=["json", "binary", "binary-default-outputs", "json-in-binary-out"],
)
def test_infer_equals_predict_bit_for_bit(client, pima, count, binary_in, binary_out):
    rows = pima_rows(count, seed=count)
    result = _pima_infer(
        client, rows, binary_in=binary_in, binary_out=binary_out, request_id=f"req-{count}"
    )
    got = result.as_numpy("probability")
    expected = pima.predict(rows)
    assert got.dtype == np.float32 and got.shape == (count, 1)
    assert np.array_equal(got, expected)  # bit for bit: same rows, same onnxruntime
    assert result.get_response()["id"] == f"req-{count}"
    assert result.get_response()["model_name"] == "pima_mlp"


def test_fp64_and_int_inputs_convert_as_predict_does(client, pima):
    rows = pima_rows(5, seed=3).astype(np.float64) + 0.123456789  # not float32-exact
    tensor = httpclient.InferInput("features", [5, 8], "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    got = client.infer("pima_mlp", [tensor]).as_numpy("probability")
    assert np.array_equal(got, pima.predict(rows))
    ints = np.round(rows).astype(np.int32)
    tensor = httpclient.InferInput("features", [5, 8], "INT32")
    tensor.set_data_from_numpy(ints)
    assert np.array_equal(
        client.infer("pima_mlp", [tensor]).as_numpy("probability"), pima.predict(ints)
    )


def test_feature_columns_as_inputs(client, pima):
    rows = pima_rows(6, seed=9)
    inputs = []
    for index, name in enumerate(reversed(pima.feature_names)):  # any order
        column = np.ascontiguousarray(rows[:, len(pima.feature_names) - 1 - index])
        tensor = httpclient.InferInput(name, [6], "FP32")
        tensor.set_data_from_numpy(column)
        inputs.append(tensor)
    got = client.infer("pima_mlp", inputs).as_numpy("probability")
    assert np.array_equal(got, pima.predict(rows))


def test_compressed_request_and_nan_refused_by_row(client):
    rows = pima_rows(4, seed=4)
    tensor = httpclient.InferInput("features", [4, 8], "FP32")
    tensor.set_data_from_numpy(rows)
    got = client.infer("pima_mlp", [tensor], request_compression_algorithm="gzip")
    assert np.array_equal(got.as_numpy("probability"), portanet.load(PIMA).predict(rows))
    rows[2, 5] = np.nan
    tensor.set_data_from_numpy(rows)
    with pytest.raises(httpclient.InferenceServerException, match="got NaN in row 2"):
        client.infer("pima_mlp", [tensor])


@pytest.fixture(scope="module")
def multi_server(model_dir):
    from tests.serve.conftest import Server

    server = Server(model_dir)  # a folder: every .onnx in it
    yield server
    server.stop()


def test_folder_serves_every_model_and_outputs_selection(multi_server, model_dir):
    client = httpclient.InferenceServerClient(multi_server.url)
    for name in ("multi", "image", "fixed"):
        assert client.is_model_ready(name)
    model = portanet.load(model_dir / "multi.onnx")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 3)).astype(np.float32)
    b = rng.integers(-5, 5, size=(7, 2)).astype(np.int64)
    inputs = [
        httpclient.InferInput("a", [7, 3], "FP32"),
        httpclient.InferInput("b", [7, 2], "INT64"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b, binary_data=False)
    expected = model.run({"a": a, "b": b})
    everything = client.infer("multi", inputs)
    assert {o["name"] for o in everything.get_response()["outputs"]} == {"scores", "best", "gate"}
    for name in ("scores", "best", "gate"):
        assert np.array_equal(everything.as_numpy(name), expected[name])
    chosen = client.infer(
        "multi",
        inputs,
        outputs=[
            httpclient.InferRequestedOutput("best", binary_data=False),
            httpclient.InferRequestedOutput("gate", binary_data=True),
        ],
    )
    response = chosen.get_response()
    assert [o["name"] for o in response["outputs"]] == ["best", "gate"]
    assert response["outputs"][0]["datatype"] == "INT64" and "data" in response["outputs"][0]
    assert response["outputs"][1]["parameters"]["binary_data_size"] == 7 * 4 * 4
    assert np.array_equal(chosen.as_numpy("best"), expected["best"])
    assert np.array_equal(chosen.as_numpy("gate"), expected["gate"])
    assert chosen.as_numpy("scores") is None


def test_image_and_fixed_batch_models(multi_server, model_dir):
    client = httpclient.InferenceServerClient(multi_server.url)
    image = portanet.load(model_dir / "image.onnx")
    pixels = np.random.default_rng(6).random((3, 16, 16, 3), dtype=np.float32)
    tensor = httpclient.InferInput("pixels", [3, 16, 16, 3], "FP32")
    tensor.set_data_from_numpy(pixels)
    got = client.infer("image", [tensor]).as_numpy("classes")
    assert np.array_equal(got, image.predict(pixels))
    fixed = portanet.load(model_dir / "fixed.onnx")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor = httpclient.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    assert np.array_equal(client.infer("fixed", [tensor]).as_numpy("squared"), fixed.predict(x))
    # A graph fixed to 2 rows takes 3: portanet runs it in chunks of 2 (the last one padded).
    three = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = httpclient.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(three)
    assert np.array_equal(client.infer("fixed", [tensor]).as_numpy("squared"), three * three)
    bad = httpclient.InferInput("x", [2, 5], "FP32")
    bad.set_data_from_numpy(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(httpclient.InferenceServerException, match="expected size 4 on axis 1"):
        client.infer("fixed", [bad])
