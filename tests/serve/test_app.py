"""The protocol's edges over raw HTTP against a real server: methods (405 with Allow, HEAD),
JSON health bodies, ids echoed as strings, gzip integrity, process metrics, and a real 500
(a model output the protocol cannot carry) logged with its traceback only under --debug."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import pytest

from tests.serve.conftest import need_module
from tests.serve.test_errors import GOOD

INFER = "/v2/models/pima_mlp/infer"


def test_wrong_methods_get_405_with_allow(pima_server):
    status, headers, body = pima_server.request("GET", INFER)
    assert status == 405 and headers["allow"] == "POST", body
    assert "expected POST for /v2/models/pima_mlp/infer, got GET" in json.loads(body)["error"]
    for path in ("/v2/health/live", "/v2/models/pima_mlp", "/metrics", "/v2"):
        status, headers, body = pima_server.request("DELETE", path)
        assert status == 405 and headers["allow"] == "GET, HEAD", (path, body)
    status, _, body = pima_server.request("GET", "/v2/nothing/here")
    assert status == 404 and "expected a V2 route" in json.loads(body)["error"]


def test_head_and_json_health_bodies(pima_server):
    for path, doc in (
        ("/v2/health/live", {"live": True}),
        ("/v2/health/ready", {"ready": True}),
        ("/v2/models/pima_mlp/ready", {"name": "pima_mlp", "ready": True}),
    ):
        status, headers, body = pima_server.request("GET", path)
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == doc
        status, headers, body = pima_server.request("HEAD", path)
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_id_echoed_as_a_string(pima_server):
    for sent, echoed in (("abc", "abc"), (7, "7"), (1.5, "1.5")):
        status, answer = pima_server.infer("pima_mlp", {**GOOD, "id": sent})
        assert status == 200 and answer["id"] == echoed, answer


def test_gzip_integrity(pima_server):
    body = json.dumps(GOOD).encode()
    whole = gzip.compress(body)
    status, answer = pima_server.infer("pima_mlp", whole, {"Content-Encoding": "gzip"})
    assert status == 200, answer
    status, answer = pima_server.infer("pima_mlp", whole[:-8], {"Content-Encoding": "gzip"})
    assert status == 400 and "got one cut short" in answer["error"], answer
    two = gzip.compress(body[:40]) + gzip.compress(body[40:])  # two members, one document
    status, answer = pima_server.infer("pima_mlp", two, {"Content-Encoding": "gzip"})
    assert status == 200, answer
    status, answer = pima_server.infer(
        "pima_mlp", b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}
    )
    assert status == 400 and "zlib cannot read" in answer["error"], answer
    status, answer = pima_server.infer("pima_mlp", whole, {"Content-Encoding": "br"})
    assert status == 415, answer


def test_metrics_include_the_process(pima_server):
    rss = pima_server.metric("process_resident_memory_bytes")
    assert 10e6 < rss < 3e9
    assert pima_server.metric("process_open_fds") > 3
    assert pima_server.metric("process_cpu_seconds_total") > 0


def _zipmap_model(folder) -> Path:
    """A real model the protocol cannot answer: a classifier's ZipMap output (a sequence of
    maps, what skl2onnx writes by default), which onnxruntime computes and the V2 protocol
    cannot carry — a 500 that is the served model's fault, not the request's."""
    onnx = need_module("onnx")
    from onnx import TensorProto, helper

    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])
    label_map = helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    )
    zipped = helper.make_value_info(
        "output_probability", helper.make_sequence_type_proto(label_map)
    )
    node = helper.make_node(
        "ZipMap",
        ["probabilities"],
        ["output_probability"],
        domain="ai.onnx.ml",
        classlabels_int64s=[0, 1],
    )
    graph = helper.make_graph([node], "zipmap", [probabilities], [zipped])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(folder) / "zipmap.onnx"
    onnx.save(model, path)
    return path


_STAMPED_500 = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ERROR portanet\.serve: model zipmap: infer answered 500: "
    r"ModelOutputError: model 'zipmap': output 'output_probability': expected a tensor"
)
_ZIPMAP_REQUEST = {
    "inputs": [
        {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.2, 0.8, 1, 0]}
    ]
}


def _log_after(server, pattern: re.Pattern[str]) -> str:
    """The server's stderr from the first line matching ``pattern`` (waited for, 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = list(server.lines)
        for index, line in enumerate(lines):
            if pattern.search(line):
                time.sleep(0.3)  # the traceback's lines follow the first one
                return "".join(server.lines[index:])
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern.pattern!r}: {''.join(server.lines)}")


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_a_500_is_logged_with_a_traceback_only_under_debug(start_server, tmp_path, debug):
    server = start_server(_zipmap_model(tmp_path), *(["--debug"] if debug else []))
    status, answer = server.infer("zipmap", _ZIPMAP_REQUEST)
    assert status == 500, answer
    assert set(answer) == {"error"}  # the protocol's error body, naming the cause and the fix
    assert "output 'output_probability': expected a tensor, got a list of dict" in answer["error"]
    assert "zipmap': False" in answer["error"]
    logged = _log_after(server, _STAMPED_500)
    if debug:
        assert "Traceback (most recent call last):" in logged, logged
        assert "in build_infer_response" in logged, logged
    else:
        assert "Traceback" not in "".join(server.lines), logged
        assert "start the server with --debug for the traceback" in logged
    assert server.metric("portanet_errors_total", model="zipmap", code="500") == 1.0
    assert server.terminate() == 0
