"""Reading a request body from ASGI messages: chunks joined, the size cap (413), the read
timeout between chunks (408) and the headers that say how to decode the body."""

from __future__ import annotations

import asyncio

import pytest

from portanet.serve.protocol import ProtocolError
from portanet.serve.reading import read_body


def _receiver(chunks: list[bytes], stall: bool = False):
    queue = list(chunks)

    async def receive() -> dict:
        if not queue:
            if stall:
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue) or stall}

    return receive


def _scope(**headers: str) -> dict:
    return {"headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def test_chunks_are_joined_and_headers_read():
    scope = _scope(content_encoding=" GZIP ", inference_header_content_length="12")
    body, encoding, header = asyncio.run(
        read_body(scope, _receiver([b"abc", b"def", b"g"]), cap=100, timeout=5)
    )
    assert (body, encoding, header) == (b"abcdefg", "gzip", 12)
    body, encoding, header = asyncio.run(
        read_body(_scope(content_encoding="identity"), _receiver([b"x"]), cap=100, timeout=5)
    )
    assert (body, encoding, header) == (b"x", None, None)


def test_the_cap_is_413_before_and_while_reading():
    with pytest.raises(ProtocolError, match="at most 10, got 11") as caught:
        asyncio.run(read_body(_scope(content_length="11"), _receiver([]), cap=10, timeout=5))
    assert caught.value.status == 413
    with pytest.raises(ProtocolError, match="raise --max-body-mb") as caught:
        asyncio.run(read_body(_scope(), _receiver([b"123456", b"789012"]), cap=10, timeout=5))
    assert caught.value.status == 413


def test_a_stalled_body_is_408_within_the_timeout():
    async def read() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ProtocolError, match=r"read timeout \(0.2 s between chunks\)") as e:
            await read_body(_scope(), _receiver([b"part"], stall=True), cap=100, timeout=0.2)
        assert e.value.status == 408
        return loop.time() - started

    assert asyncio.run(read()) < 2.0


def test_a_bad_header_length_and_a_client_gone_are_400():
    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length as an integer"):
        asyncio.run(
            read_body(_scope(inference_header_content_length="x"), _receiver([]), cap=9, timeout=5)
        )
    with pytest.raises(ProtocolError, match="a client that went away"):
        asyncio.run(read_body(_scope(), _receiver([]), cap=9, timeout=5))
