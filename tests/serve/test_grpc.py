"""The KServe V2 gRPC protocol (``--grpc-port``) through the stock ``tritonclient.grpc``: health,
metadata, binary tensors equal to ``predict`` bit for bit, encoded images, errors as gRPC status
codes; and the committed proto's field numbers equal the protocol's (tritonclient's copy)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.serve.conftest import PIMA, REPO, need_module, pima_rows

grpcclient = need_module("tritonclient.grpc")


def _grpc_url(server) -> str:
    found = re.search(r"gRPC at (127\.0\.0\.1:\d+)", "".join(server.lines))
    assert found, server.lines
    return found.group(1)


@pytest.fixture(scope="module")
def grpc_server():
    from tests.serve.conftest import Server

    server = Server(PIMA, "--grpc-port", "0")
    yield server
    server.stop()


def test_health_and_metadata(grpc_server, pima):
    client = grpcclient.InferenceServerClient(_grpc_url(grpc_server))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("pima_mlp")
    meta = client.get_model_metadata("pima_mlp", as_json=True)
    assert meta["inputs"][0]["name"] == "features" and meta["inputs"][0]["shape"] == ["-1", "8"]
    assert client.get_server_metadata(as_json=True)["name"] == "portanet"
    client.close()


@pytest.mark.parametrize("rows", [1, 37])
def test_infer_equals_predict_bit_for_bit(grpc_server, pima, rows):
    client = grpcclient.InferenceServerClient(_grpc_url(grpc_server))
    batch = pima_rows(rows, seed=rows)
    tensor = grpcclient.InferInput("features", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("pima_mlp", [tensor], request_id="r-1")
    assert np.array_equal(result.as_numpy("probability"), pima.predict(batch))
    assert result.get_response().id == "r-1"
    client.close()


def test_errors_are_status_codes(grpc_server):
    client = grpcclient.InferenceServerClient(_grpc_url(grpc_server))
    batch = pima_rows(2)
    tensor = grpcclient.InferInput("features", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer("nosuch", [tensor])
    assert "NOT_FOUND" in str(caught.value.status()) and "nosuch" in caught.value.message()
    wrong = grpcclient.InferInput("features", [2, 7], "FP32")
    wrong.set_data_from_numpy(batch[:, :7].copy())
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer("pima_mlp", [wrong])
    assert "INVALID_ARGUMENT" in str(caught.value.status()), caught.value.message()
    twice = [grpcclient.InferRequestedOutput("probability")] * 2
    with pytest.raises(grpcclient.InferenceServerException, match="once, got it twice"):
        client.infer("pima_mlp", [tensor], outputs=twice)
    nan = batch.copy()
    nan[1, 3] = np.nan
    tensor.set_data_from_numpy(nan)
    with pytest.raises(grpcclient.InferenceServerException, match="row 1"):
        client.infer("pima_mlp", [tensor])
    client.close()


def test_proto_field_numbers_match_the_protocol():
    code = (
        "import json; from portanet.serve.grpc import inference_pb2 as p; "
        "print(json.dumps({n: {f.name: f.number for f in d.fields} "
        "for n, d in p.DESCRIPTOR.message_types_by_name.items()}))"
    )
    ours = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout
    )
    from tritonclient.grpc import service_pb2

    theirs = service_pb2.DESCRIPTOR.message_types_by_name
    for name, fields in ours.items():
        assert {f.name: f.number for f in theirs[name].fields} == fields, name
