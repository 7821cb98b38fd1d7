"""uvicorn's httptools protocol with a header read timeout and whole-body delivery.

uvicorn closes idle keep-alive connections but lets a client take forever to send a request's
headers, so a few thousand slow connections hold every file descriptor. This subclass (public
``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, passed as ``Config(http=...)``)
arms a timer when a connection opens and when a request begins, and answers 408 and closes the
connection when the headers are not complete in time. The body's own timeout is the app's.

Bodies: uvicorn stops reading a connection once 64 KB of body wait for the app and wakes the
app for every piece the socket gives, so a 0.6 MB image tensor took about ten wake-ups, pauses,
resumes and copies of the growing body. A body whose ``Content-Length`` is within the server's
body cap is instead buffered whole (the app holds it whole anyway) and handed over in one
piece, with a hand-over at least every :data:`BODY_SIGNAL_S` while it still arrives, so the
app's read timeout between chunks keeps its meaning. Other bodies (chunked, or declared over
the cap, which the app refuses with 413) take uvicorn's own path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portanet.serve.protocol import error_body

#: A body still arriving is handed to the app at least this often (and the read timeout is
#: never shorter than 20 times this).
BODY_SIGNAL_S = 0.05


class JoinedWrites:
    """The transport a request's response is written through: a write is held until the
    next one (or the end of the event loop's current step) and the two leave in one
    ``send``, so that uvicorn's status-and-headers write and its body write make one syscall
    and one TCP segment instead of two (about 13 % of the event loop's busy time, measured
    on image requests, was these writes)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: bytes | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._pending = None
        if len(data) < 65536:
            self._transport.write(pending + data)
        else:  # no copy of a large body (uvloop writes both in one writev)
            self._transport.writelines((pending, data))

    def flush(self) -> None:
        """Write what is held (called at the end of the loop step that wrote it)."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            if not self._transport.is_closing():  # the client may have gone meanwhile
                self._transport.write(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())


def timed_protocol(read_timeout: float, max_body: int | None = None) -> type[HttpToolsProtocol]:
    """The protocol class closing connections whose headers take over ``read_timeout`` s, and
    buffering bodies declared within ``max_body`` bytes whole (None: uvicorn's way)."""
    signal_every = min(BODY_SIGNAL_S, read_timeout / 20)
    body = error_body(
        f"expected the request headers within the read timeout ({read_timeout:g} s), got a "
        f"client too slow (raise --read-timeout)"
    )
    answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        #: The declared body length when it is buffered whole; None: uvicorn's own handling.
        _whole: int | None = None
        _signalled = 0.0
        _size = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pieces: list[bytes] = []

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(read_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            transport = self.transport
            if transport is not None and not transport.is_closing():
                try:
                    transport.write(answer)
                finally:
                    transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self._whole = None
            self._pieces.clear()
            self._size = 0
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = JoinedWrites(self.transport, self.loop)  # type: ignore[assignment]  # duck-typed: write, close, is_closing
            if max_body is None:
                return
            for name, value in self.headers:
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        return
                    if 0 < length <= max_body:
                        self._whole = length
                        self._signalled = self.loop.time()
                    return
                if name == b"transfer-encoding":
                    return

        def on_body(self, body: bytes) -> None:
            whole = self._whole
            cycle = self.cycle
            if whole is None or cycle is None:
                return super().on_body(body)
            if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
                return None
            pieces = self._pieces
            pieces.append(body)
            self._size += len(body)
            if self._size >= whole:  # all of it (more would be the parser's error)
                self._hand_over(cycle)
                return None
            now = self.loop.time()
            if now - self._signalled >= signal_every:  # still arriving: the app's timer restarts
                self._signalled = now
                self._hand_over(cycle)
            return None

        def _hand_over(self, cycle: Any) -> None:
            """Give the pieces read so far to the app's next ``receive()``: joined once into
            ``bytes``, which uvicorn's ``bytes(cycle.body)`` then takes without a copy."""
            pieces = self._pieces
            joined = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            if cycle.body:
                cycle.body += joined  # the app has not taken the last hand-over yet
            else:
                cycle.body = joined
            cycle.message_event.set()

        def on_message_complete(self) -> None:
            if self._pieces and self.cycle is not None:
                self._hand_over(self.cycle)
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return TimedHttpToolsProtocol
