"""Every error over raw HTTP: status, the protocol's {"error": ...} body and its message; the
server answers a good request afterwards and no traceback ever reaches the client."""

from __future__ import annotations

import gzip
import json
import threading
import time

import numpy as np
import pytest

from tests.serve.conftest import PIMA, pima_rows

GOOD = {
    "inputs": [
        {
            "name": "features",
            "shape": [1, 8],
            "datatype": "FP32",
            "data": [6, 148, 72, 35, 0, 33.6, 0.627, 50],
        }
    ]
}


def _with(**changes) -> dict:
    tensor = {**GOOD["inputs"][0], **changes}
    return {"inputs": [tensor]}


CASES = [
    ("malformed-json", b'{"inputs": [', 400, "expected a JSON request body, got malformed JSON"),
    ("not-an-object", b"[1, 2]", 400, "expected a JSON object with 'inputs', got list"),
    ("no-inputs", {"inputs": []}, 400, "expected 'inputs' as a non-empty list"),
    (
        "unknown-input",
        _with(name="feature"),
        400,
        "unknown input 'feature'; expected the inputs ['features']",
    ),
    (
        "wrong-datatype",
        _with(datatype="BF16"),
        400,
        "input 'features': expected a numeric datatype (BOOL, UINT8",
    ),
    (
        "bytes-as-json",
        _with(datatype="BYTES", data=["abc"]),
        400,
        "expected BYTES (encoded images) as binary data",
    ),
    (
        "datatype-vs-data",
        _with(datatype="INT64"),
        400,
        "expected integers for datatype INT64, got 33.6 at flat index 5",
    ),
    (
        "strings-as-data",
        _with(data=["6"] * 8),
        400,
        "expected numbers for datatype FP32, got str '6'",
    ),
    (
        "ragged-data",
        _with(shape=[2, 4], data=[[1, 2, 3, 4], [5, 6, 7]]),
        400,
        "expected a rectangular list of numbers as 'data'",
    ),
    ("shape-vs-data", _with(shape=[2, 8]), 400, "'shape' [2, 8] needs 16 values, got 8"),
    (
        "wrong-shape",
        _with(shape=[1, 7], data=[1, 2, 3, 4, 5, 6, 7]),
        400,
        "input 'features': expected size 8 on axis 1 (batch, 8), got 7 (1, 7)",
    ),
    ("wrong-rank", _with(shape=[1, 2, 4]), 400, "input 'features': expected 2 dimensions"),
    (
        "nan",
        b'{"inputs": [{"name": "features", "shape": [2, 8], "datatype": "FP64", "data": '
        b"[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, NaN, 5, 6, 7, 8]}]}",
        400,
        "input 'features': expected finite numbers, got NaN in row 1",
    ),
    (
        "fp32-overflow",
        _with(data=[1, 2, 3, 4, 5, 6, 7, 1e39]),
        400,
        "got 1e+39 at flat index 7: outside float32 range",
    ),
    (
        "infinity",
        b'{"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", '
        b'"data": [1, 2, 3, 4, 5, 6, 7, Infinity]}]}',
        400,
        "input 'features': expected finite numbers, got inf in row 0",
    ),
    ("true-as-fp32", _with(data=[1, 2, 3, 4, 5, 6, 7, True]), 400, "got true/false"),
    (
        "deep-json",
        b'{"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": '
        + b"[" * 2000
        + b"1"
        + b"]" * 2000
        + b"}]}",
        400,
        "expected JSON nested at most 1024 deep",
    ),
    (
        "duplicate-output",
        {**GOOD, "outputs": [{"name": "probability"}, {"name": "probability"}]},
        400,
        "expected each requested output once, got it twice",
    ),
    (
        "class-count",
        {**GOOD, "outputs": [{"name": "probability", "parameters": {"classification": 2}}]},
        400,
        "the classification extension is not supported",
    ),
    ("object-id", {**GOOD, "id": {"a": 1}}, 400, "expected 'id' as a string, got dict"),
    (
        "unknown-output",
        {**GOOD, "outputs": [{"name": "label"}]},
        400,
        "unknown output 'label'; expected one of ['probability']",
    ),
    (
        "binary-size-mismatch",
        _with(data=None, parameters={"binary_data_size": 31}),
        400,
        "expected binary_data_size 32 for shape [1, 8] of FP32, got 31",
    ),
]


@pytest.mark.parametrize("body,status,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request(pima_server, body, status, message):
    if isinstance(body, dict) and body["inputs"] and body["inputs"][0].get("data", 0) is None:
        body["inputs"][0].pop("data")
    got, answer = pima_server.infer("pima_mlp", body)
    assert got == status
    assert list(answer) == ["error"] and message in answer["error"], answer
    assert "Traceback" not in answer["error"]
    ok, good = pima_server.infer("pima_mlp", GOOD)
    assert ok == 200 and good["outputs"][0]["data"] == [pytest.approx(0.60713047)]


def test_unknown_model_version_and_route(pima_server):
    status, answer = pima_server.infer("no_such_model", GOOD)
    assert status == 404 and answer["error"] == (
        "expected one of the models ['pima_mlp'], got 'no_such_model'"
    )
    status, _, body = pima_server.request("GET", "/v2/models/pima_mlp/versions/2")
    assert status == 404 and json.loads(body)["error"] == (
        "model 'pima_mlp': expected version 1, got '2'"
    )
    status, _, body = pima_server.request("GET", "/v2/nothing/here")
    assert status == 404 and "got GET /v2/nothing/here" in json.loads(body)["error"]
    status, _, body = pima_server.request(
        "POST", "/v2/models/pima_mlp/versions/1/infer", json.dumps(GOOD).encode()
    )
    assert status == 200 and json.loads(body)["model_version"] == "1"


def test_binary_header_length_checked(pima_server):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    ).encode()
    blob = np.ones((1, 8), dtype="<f4").tobytes()
    status, _, body = pima_server.request(
        "POST",
        "/v2/models/pima_mlp/infer",
        head + blob + b"xx",
        {"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 400 and json.loads(body)["error"] == (
        "expected 32 bytes of binary tensor data after the JSON header, got 34"
    )
    status, _, body = pima_server.request(
        "POST",
        "/v2/models/pima_mlp/infer",
        head + blob,
        {"Inference-Header-Content-Length": str(len(head) + 999)},
    )
    assert (
        status == 400 and "Inference-Header-Content-Length between 1" in json.loads(body)["error"]
    )


def test_body_cap_413(start_server):
    server = start_server(PIMA, "--max-body-mb", "0.01")  # 10,485 bytes
    rows = pima_rows(400).tolist()
    big = json.dumps(
        {"inputs": [{"name": "features", "shape": [400, 8], "datatype": "FP32", "data": rows}]}
    ).encode()
    status, headers, body = server.request("POST", "/v2/models/pima_mlp/infer", big)
    assert status == 413 and headers.get("connection") == "close"
    assert json.loads(body)["error"] == (
        f"expected a request body in bytes of at most 10,485, got {len(big):,} "
        f"(raise --max-body-mb)"
    )
    bomb = gzip.compress(b" " * 200_000 + json.dumps(GOOD).encode())  # small on the wire
    status, _, body = server.request(
        "POST", "/v2/models/pima_mlp/infer", bomb, {"Content-Encoding": "gzip"}
    )
    assert (
        status == 413
        and "expected a decompressed body in bytes of at most 10,485, got more"
        in json.loads(body)["error"]
    )
    status, answer = server.infer("pima_mlp", GOOD)
    assert status == 200


def test_queue_full_503_and_the_queued_request_still_answers(start_server):
    # One slot, and a batcher that waits 1.5 s for company (one session: with several, an idle
    # session takes a request at once): the second request finds it full.
    server = start_server(
        PIMA, "--max-queue", "1", "--max-queue-delay-ms", "1500", "--sessions", "1"
    )
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(
            zip(("status", "body"), server.infer("pima_mlp", GOOD), strict=True)
        )
    )
    thread.start()
    deadline = time.monotonic() + 10
    while server.metric("portanet_queue_depth", model="pima_mlp") < 1:
        assert time.monotonic() < deadline, "the first request never queued"
        time.sleep(0.01)
    status, answer = server.infer("pima_mlp", GOOD)
    assert status == 503 and answer["error"] == (
        "model 'pima_mlp': expected at most 1 requests "
        "waiting, got one more; the queue is full, "
        "retry later"
    )
    thread.join(10)
    assert first["status"] == 200
    assert server.metric("portanet_requests_total", model="pima_mlp", code="503") == 1
    assert server.metric("portanet_errors_total", model="pima_mlp", code="503") == 1


def test_allow_nan_lets_nan_through(start_server):
    server = start_server(PIMA, "--allow-nan")
    doc = {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 8],
                "datatype": "FP32",
                "data": [6, 148, 72, 35, 0, 33.6, 0.627, 50],
            }
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(doc).encode().replace(b"33.6", b"NaN")
    status, headers, body = server.request("POST", "/v2/models/pima_mlp/infer", head)
    assert status == 200
    length = int(headers["inference-header-content-length"])
    assert np.isnan(np.frombuffer(body[length:], dtype="<f4")).all()
