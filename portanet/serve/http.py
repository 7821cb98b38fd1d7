"""uvicorn's httptools protocol with a header read timeout.

uvicorn closes idle keep-alive connections but lets a client take forever to send a request's
headers, so a few thousand slow connections hold every file descriptor. This subclass (public
``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, passed as ``Config(http=...)``)
arms a timer when a connection opens and when a request begins, and answers 408 and closes the
connection when the headers are not complete in time. The body's own timeout is the app's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portanet.serve.protocol import error_body


def timed_protocol(read_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class closing connections whose headers take over ``read_timeout`` s."""
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

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return TimedHttpToolsProtocol
