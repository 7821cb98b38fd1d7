"""Reading an infer request's body from ASGI: the whole body within the size cap, each chunk
within the read timeout (408 otherwise), and the headers that say how to decode it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from portanet.serve.body import too_large
from portanet.serve.protocol import ProtocolError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None, str | None]:
    length = header_length = encoding = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value
        elif key == b"inference-header-content-length":
            header_length = value
        elif key == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
    return length, header_length, encoding


async def read_body(
    scope: Scope, receive: Receive, *, cap: int, timeout: float
) -> tuple[bytes, str | None, int | None]:
    """The whole request body (at most ``cap`` bytes, else 413), its content encoding (None
    for identity) and the binary extension's JSON header length (None without one).

    Each body chunk must arrive within ``timeout`` seconds of the previous one (else 408)."""
    length, header_length, encoding = _headers(scope)
    if length is not None and int(length) > cap:
        raise too_large("a request body in bytes", cap, f"{int(length):,}", "--max-body-mb")
    parsed = None
    if header_length is not None:
        try:
            parsed = int(header_length)
        except ValueError:
            raise ProtocolError(
                f"expected Inference-Header-Content-Length as an integer, "
                f"got {header_length.decode('latin-1')!r:.40}"
            ) from None
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    expired: list[bool] = []

    def expire() -> None:  # a plain timer: asyncio.timeout costs more per request
        expired.append(True)
        if task is not None:
            task.cancel()

    timer = loop.call_later(timeout, expire)
    try:
        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            size = len(body)
            while message.get("more_body"):
                timer.cancel()
                timer = loop.call_later(timeout, expire)
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    raise too_large("a request body in bytes", cap, "more", "--max-body-mb")
                chunks.append(chunk)
            body = b"".join(chunks)
    except asyncio.CancelledError:
        if not expired or task is None:
            raise
        if sys.version_info >= (3, 11):  # 3.10 keeps no cancellation count to undo
            task.uncancel()
        raise ProtocolError(
            f"expected the request body within the read timeout ({timeout:g} s between "
            f"chunks), got a client too slow (raise --read-timeout)",
            status=408,
        ) from None
    finally:
        timer.cancel()
    if message.get("type") == "http.disconnect":
        raise ProtocolError("expected a whole request body, got a client that went away")
    if len(body) > cap:
        raise too_large("a request body in bytes", cap, f"{len(body):,}", "--max-body-mb")
    if encoding == "identity":
        encoding = None
    return body, encoding, parsed
