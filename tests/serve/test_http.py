"""The server's HTTP protocol (portanet.serve.http) and the event loop's share of a request
(portanet.serve.app): bodies handed to the app whole, responses written in one piece, binary
tensor bodies decoded on the loop or in a thread — all through a real `portanet serve`
process and raw sockets, answers compared with local ``predict``."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import orjson
import pytest

from portanet.serve.app import INLINE_BINARY_BYTES, OFFLOAD_BYTES, _cheap_on_loop
from tests.serve.conftest import PIMA, Server, pima_rows


def _binary_request(rows: np.ndarray, *, connection: str = "keep-alive") -> bytes:
    """A whole HTTP/1.1 infer request: Pima rows as a binary tensor, binary output asked."""
    blob = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        }
    )
    return (
        b"POST /v2/models/pima_mlp/infer HTTP/1.1\r\nHost: x\r\nConnection: "
        + connection.encode()
        + b"\r\nInference-Header-Content-Length: "
        + str(len(head)).encode()
        + b"\r\nContent-Length: "
        + str(len(head) + len(blob)).encode()
        + b"\r\n\r\n"
        + head
        + blob
    )


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from a keep-alive connection (status line, headers, body by length)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {bytes(buffer)[:200]!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    buffer[:] = rest[length:]
    return lines[0].encode(), headers, rest[:length]


def _binary_output(headers: dict[str, str], body: bytes) -> np.ndarray:
    start = int(headers["inference-header-content-length"])
    doc = json.loads(body[:start])
    return np.frombuffer(body[start:], "<f4").reshape(doc["outputs"][0]["shape"])


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return pima_rows(40_000, seed=7)


def test_large_binary_bodies_on_one_connection_equal_predict(pima_server, pima, rows):
    """Bodies of 10 rows to 1.3 MB (decoded on the loop) and 5 MB (in a thread) on one
    keep-alive connection: every answer bit-identical to local predict, in order."""
    big = np.tile(rows, (4, 1))[:160_000]  # 5.1 MB of tensor data: over INLINE_BINARY_BYTES
    assert big.nbytes > INLINE_BINARY_BYTES > rows.nbytes
    batches = [rows[:10], rows, rows[:20_000], big, rows[5:9]]
    with socket.create_connection(("127.0.0.1", pima_server.port), timeout=60) as sock:
        buffer = bytearray()
        for batch in batches:
            sock.sendall(_binary_request(batch))
            status, headers, body = _read_response(sock, buffer)
            assert status.startswith(b"HTTP/1.1 200"), body[:300]
            got = _binary_output(headers, body)
            np.testing.assert_array_equal(got, pima.predict(batch).reshape(got.shape))


def test_pipelined_requests_and_head_are_answered_in_order(pima_server, rows):
    """Two requests in one write, then HEAD (a response without a body: its headers leave
    on their own) and a GET on the same connection."""
    with socket.create_connection(("127.0.0.1", pima_server.port), timeout=30) as sock:
        buffer = bytearray()
        sock.sendall(_binary_request(rows[:3]) + _binary_request(rows[3:10]))
        shapes = []
        for _ in range(2):
            status, headers, body = _read_response(sock, buffer)
            assert status.startswith(b"HTTP/1.1 200")
            shapes.append(_binary_output(headers, body).shape[0])
        assert shapes == [3, 7]
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in buffer and time.monotonic() < deadline:
            buffer += sock.recv(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length:" in head.lower()
        assert rest == b""
        buffer.clear()
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = _read_response(sock, buffer)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body) == {"live": True}


def test_a_body_in_pieces_within_the_read_timeout_is_answered(start_server, pima, rows):
    """Pieces 0.4 s apart under --read-timeout 1: the whole body takes 2 s, longer than the
    timeout, yet each piece comes in time, so the request is answered (and a chunked body,
    which takes uvicorn's own path, too)."""
    server = start_server(PIMA, "--read-timeout", "1")
    request = _binary_request(rows[:2000], connection="close")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        step = len(request) // 5 + 1
        for start in range(0, len(request), step):
            sock.sendall(request[start : start + step])
            time.sleep(0.4)
        status, headers, body = _read_response(sock, bytearray())
    assert status.startswith(b"HTTP/1.1 200"), body[:300]
    np.testing.assert_array_equal(
        _binary_output(headers, body).reshape(-1), pima.predict(rows[:2000]).reshape(-1)
    )
    doc = orjson.dumps(
        {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": [1] * 8}]}
    )
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(doc), doc)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v2/models/pima_mlp/infer HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked
        )
        status, _, body = _read_response(sock, bytearray())
    assert status.startswith(b"HTTP/1.1 200"), body


def test_a_stalled_whole_body_still_gets_408(start_server):
    server: Server = start_server(PIMA, "--read-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(_binary_request(np.ones((500, 8), np.float32))[:-100])
        started = time.monotonic()
        status, _, body = _read_response(sock, bytearray())
    assert status.startswith(b"HTTP/1.1 408"), body
    assert 0.9 < time.monotonic() - started < 5


def test_which_bodies_are_decoded_on_the_event_loop():
    head = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4]}]}'
    body = head + bytes(16)
    assert _cheap_on_loop(body, len(head))  # a binary numeric tensor
    assert not _cheap_on_loop(head.replace(b"FP32", b"BYTES") + bytes(16), len(head))
    escaped = head.replace(b"FP32", b"\\u0042YTES")  # BYTES spelt with an escape
    assert not _cheap_on_loop(escaped + bytes(16), len(escaped))
    assert not _cheap_on_loop(head + bytes(INLINE_BINARY_BYTES), len(head))
    assert _cheap_on_loop(b'{"inputs":[]}', None)  # small JSON
    assert not _cheap_on_loop(b" " * OFFLOAD_BYTES, None)  # large JSON: a thread parses it
