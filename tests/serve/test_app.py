"""The protocol's edges over raw HTTP against a real server: methods (405 with Allow, HEAD),
JSON health bodies, ids echoed as strings, gzip integrity, process metrics."""

from __future__ import annotations

import gzip
import json

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
