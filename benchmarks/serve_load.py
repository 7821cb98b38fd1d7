"""A small closed-loop HTTP/1.1 load generator (asyncio, keep-alive, one connection per client).

Every client sends a request, waits for the whole response, checks it, and sends the next one,
until its time or request budget is spent (both bounded). Used by ``serve_bench.py`` for every
server alike, so that the load generator is the same on both sides of a comparison. Traffic goes
only to the host given (the benchmark passes 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

try:  # the same event loop the servers use, when it is installed
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


@dataclass
class LoadResult:
    """What a run measured: counts, wall time and per-request latencies in seconds."""

    requests: int = 0
    errors: int = 0
    wrong: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        """Latency quantile in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float]:
        """req/s, p50, p99 (ms), errors and wrong answers."""
        return {
            "req_s": round(self.rate, 1),
            "p50_ms": round(self.quantile(0.50), 2),
            "p99_ms": round(self.quantile(0.99), 2),
            "requests": self.requests,
            "errors": self.errors,
            "wrong": self.wrong,
            "mean_ms": round(1000 * statistics.fmean(self.latencies), 2)
            if self.latencies
            else float("nan"),
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection that reads one response at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        status = int(head[0].split(" ", 2)[1])
        self.waiter.set_result((status, headers, body))

    async def request(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


def http_request(
    path: str, body: bytes, host: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of one HTTP/1.1 POST with a body."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _run(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    check: Callable[[int, int, bytes], bool],
    clients: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult()
    deadline = time.perf_counter() + seconds
    per_client = max(1, max_requests // clients)

    async def client(index: int) -> None:
        _, conn = await loop.create_connection(_Connection, host, port)
        sent = 0
        try:
            while sent < per_client and time.perf_counter() < deadline:
                which = (index * per_client + sent) % len(payloads)
                sent += 1
                start = time.perf_counter()
                try:
                    status, _, body = await conn.request(payloads[which])
                except ConnectionError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or str(exc)
                    return
                result.latencies.append(time.perf_counter() - start)
                result.requests += 1
                if status != 200:
                    result.errors += 1
                    result.first_error = result.first_error or f"{status} {body[:200]!r}"
                elif not check(which, status, body):
                    result.wrong += 1
        finally:
            if conn.transport is not None:
                conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    check: Callable[[int, int, bytes], bool],
    *,
    clients: int = 64,
    seconds: float = 10.0,
    max_requests: int = 1_000_000,
) -> LoadResult:
    """Closed-loop load: ``clients`` connections each sending ``payloads`` round-robin until
    ``seconds`` pass or ``max_requests`` (in total) are sent; ``check(i, status, body)`` judges
    the answer to ``payloads[i]``."""
    coro = _run(host, port, payloads, check, clients, seconds, max_requests)
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)
