"""The ASGI application speaking the Open Inference Protocol (REST, V2).

A plain ASGI callable with its own routing over the protocol's handful of paths: measured on
the 2-core machine, a framework's router and request/response objects halved the requests per
second a 1-row model could serve (see the README's serve section), and nothing else here needs
one. It runs under any ASGI server and mounts under another ASGI app (``root_path`` is honoured).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

import portanet
from portanet.errors import PortanetError
from portanet.serve.batching import Batcher
from portanet.serve.body import decode_request
from portanet.serve.failures import log_internal_error
from portanet.serve.metrics import Metrics
from portanet.serve.options import ServeOptions
from portanet.serve.protocol import (
    InferRequest,
    ModelOutputError,
    ProtocolError,
    build_infer_response,
    error_body,
)
from portanet.serve.reading import Receive, Scope, read_body
from portanet.serve.repository import VERSION, ServedModel

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = b"application/json"
_CLOSE = ((b"connection", b"close"),)
#: JSON bodies at least this large (and every compressed body) are decoded in a thread, off
#: the event loop.
OFFLOAD_BYTES = 32 * 1024
#: Binary-extension bodies of numeric tensors up to this size are decoded on the event loop:
#: their tensors are views of the body, and checking them (NaN/Inf, shapes) costs about 75 µs
#: per MB, less than a hand-off to a decode thread and back (measured: a 0.6 MB image body
#: decodes in 45 µs; the two thread hops cost the server 0.2 ms of CPU per request).
INLINE_BINARY_BYTES = 4 * 1024 * 1024
_GET = b"GET, HEAD"


class ServeApp:
    """ASGI app serving :class:`ServedModel` objects; build it with :func:`create_app`."""

    def __init__(self, models: Sequence[ServedModel], options: ServeOptions) -> None:
        self.options = options
        self.models = {m.name: m for m in models}
        self.metrics = Metrics(options.max_batch_size)
        self.max_body = options.max_body_bytes
        self._decoder = ThreadPoolExecutor(
            min(4, os.cpu_count() or 1), thread_name_prefix="portanet-decode"
        )
        self._cut: str | None = None
        self._batchers: dict[str, Batcher] = {
            m.name: Batcher(
                m,
                self.metrics,
                max_batch_size=options.max_batch_size,
                max_delay_s=options.max_queue_delay_ms / 1000,
                max_queue=options.max_queue,
            )
            for m in models
        }
        self._started = False
        self.draining = False
        self.inflight = 0
        #: Infer requests accepted (read and queued) and answered with 200, since start.
        self.accepted = 0
        self.completed = 0

    # ---- lifecycle -------------------------------------------------------------------------
    def _start(self) -> None:
        if not self._started:
            self._started = True
            for batcher in self._batchers.values():
                batcher.start()

    async def close(self) -> None:
        """Stop the batching loops (queued requests get 503)."""
        for batcher in self._batchers.values():
            await batcher.stop()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._started = False

    def begin_drain(self) -> None:
        """Refuse new infer requests with 503 and report not ready; in-flight ones complete."""
        self.draining = True

    def cut(self, reason: str) -> None:
        """Answer every request still waiting 503 with ``reason`` (the drain's time is up)."""
        self._cut = reason
        for batcher in self._batchers.values():
            batcher.cut(reason)

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until no request is in flight (at most ``timeout`` seconds); True if drained."""
        deadline = time.monotonic() + timeout
        while self.inflight or any(b.depth for b in self._batchers.values()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # ---- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :]
        parts = path.strip("/").split("/")
        method = scope["method"]
        head = method == "HEAD"
        if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
            model = parts[2]
            rest = parts[3:]
            if len(rest) >= 2 and rest[0] == "versions":
                if rest[1] != VERSION or model not in self.models:
                    return await self._error(send, 404, self._unknown(model, rest[1]))
                rest = rest[2:]
            if rest == ["infer"]:
                if method == "POST":
                    return await self._infer(model, scope, receive, send)
                return await self._not_allowed(send, method, path, b"POST")
            if len(rest) > 1 or (rest and rest[0] != "ready"):
                return await self._no_route(send, method, path)
            if method not in ("GET", "HEAD"):
                return await self._not_allowed(send, method, path, _GET)
            served = self.models.get(model)
            if served is None:
                return await self._error(send, 404, self._unknown(model))
            if rest:
                ready = not self.draining
                doc = {"name": model, "ready": ready}
                return await _respond(send, 200 if ready else 503, orjson.dumps(doc), head=head)
            return await _respond(send, 200, orjson.dumps(served.metadata()), head=head)
        if parts == ["v2", "health", "live"]:
            answer: tuple[int, bytes, bytes] = (200, orjson.dumps({"live": True}), _JSON)
        elif parts == ["v2", "health", "ready"]:
            ready = not self.draining
            answer = (200 if ready else 503, orjson.dumps({"ready": ready}), _JSON)
        elif parts == ["v2"]:
            doc = {
                "name": "portanet",
                "version": portanet.__version__,
                "extensions": ["binary_tensor_data"],
            }
            answer = (200, orjson.dumps(doc), _JSON)
        elif parts == ["metrics"]:
            body, content_type = self.metrics.exposition()
            answer = (200, body, content_type.encode())
        else:
            return await self._no_route(send, method, path)
        if method not in ("GET", "HEAD"):
            return await self._not_allowed(send, method, path, _GET)
        await _respond(send, answer[0], answer[1], answer[2], head=head)

    def _unknown(self, model: str, version: str | None = None) -> str:
        if model in self.models and version is not None:
            return f"model {model!r}: expected version {VERSION}, got {version!r}"
        return f"expected one of the models {sorted(self.models)}, got {model!r}"

    async def _no_route(self, send: Send, method: str, path: str) -> None:
        await self._error(
            send,
            404,
            f"expected a V2 route (GET /v2, /v2/health/live|ready, "
            f"/v2/models/NAME[/ready], /metrics; POST /v2/models/NAME/infer), "
            f"got {method} {path}",
        )

    async def _not_allowed(self, send: Send, method: str, path: str, allow: bytes) -> None:
        await self._error(
            send,
            405,
            f"expected {allow.decode()} for {path}, got {method}",
            ((b"allow", allow),),
        )

    async def _error(
        self, send: Send, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        await _respond(send, status, error_body(message), _JSON, extra)

    # ---- inference -------------------------------------------------------------------------
    async def _infer(self, model: str, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        served = self.models.get(model)
        if served is None:
            self.metrics.observe_request("", 404, time.perf_counter() - start)
            return await self._error(send, 404, self._unknown(model))
        if self.draining:
            self.metrics.observe_request(model, 503, time.perf_counter() - start)
            return await self._error(
                send,
                503,
                "expected a running server, got one shutting down; retry on another replica",
                _CLOSE,
            )
        self._start()
        self.inflight += 1
        extra: Sequence[tuple[bytes, bytes]] = ()
        headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", _JSON),)
        try:
            request, feeds, rows = await self._decode(served, scope, receive)
            self.accepted += 1
            if rows == 0:
                results = served.model.run(feeds, allow_nan=True)
            else:
                results = await self._batchers[model].submit(feeds, rows)
            payload, json_length = build_infer_response(model, VERSION, request, results)
            self.completed += 1
            status = 200
            if json_length is not None:
                headers = (
                    (b"content-type", b"application/octet-stream"),
                    (b"inference-header-content-length", str(json_length).encode()),
                )
        except ProtocolError as exc:
            status, payload = exc.status, error_body(str(exc))
            extra = _CLOSE if status in (408, 413) or self.draining else ()
        except PortanetError as exc:  # e.g. onnxruntime refusing a shape at run time
            status, payload = 400, error_body(f"model {model!r}: {exc}")
        except asyncio.CancelledError:  # the drain's time ran out while this request waited
            status, extra = 503, _CLOSE
            payload = error_body(
                f"model {model!r}: {self._cut or 'the server stopped'} before this request "
                f"was answered; retry on another replica"
            )
        except ModelOutputError as exc:  # the model's fault, said to the client as it is
            log_internal_error(f"model {model}: infer answered 500", exc, self.options.debug)
            status, payload = 500, error_body(str(exc))
        except Exception as exc:  # never a traceback to the client; the server log has it
            log_internal_error(f"model {model}: infer answered 500", exc, self.options.debug)
            status = 500
            payload = error_body(
                f"model {model!r}: internal server error (the server log has the details)"
            )
        finally:
            self.inflight -= 1
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self.metrics.observe_request(model, status, time.perf_counter() - start)

    async def run_prepared(
        self, served: ServedModel, feeds: dict[str, Any], rows: int
    ) -> dict[str, Any]:
        """Run checked feeds through the model's batcher (the gRPC service's way in)."""
        if self.draining:
            raise ProtocolError(
                "expected a running server, got one shutting down; retry on another replica", 503
            )
        self._start()
        self.inflight += 1
        try:
            self.accepted += 1
            if rows == 0:
                results = served.model.run(feeds, allow_nan=True)
            else:
                results = await self._batchers[served.name].submit(feeds, rows)
            self.completed += 1
            return results
        finally:
            self.inflight -= 1

    async def _decode(
        self, served: ServedModel, scope: Scope, receive: Receive
    ) -> tuple[InferRequest, dict[str, Any], int]:
        """Read, decompress, parse and check a request: in a thread when the body is large."""
        body, encoding, header_length = await read_body(
            scope, receive, cap=self.max_body, timeout=self.options.read_timeout
        )
        allow_nan = self.options.allow_nan
        max_elements = self.options.max_elements

        def decode() -> tuple[InferRequest, dict[str, Any], int]:
            request = decode_request(
                body,
                encoding,
                header_length,
                max_bytes=self.max_body,
                max_elements=max_elements,
            )
            if request.outputs is not None:
                for item in request.outputs:
                    if item.name not in served.output_names:
                        raise ProtocolError(
                            f"model {served.name!r}: unknown output {item.name!r}; "
                            f"expected one of {served.output_names}"
                        )
            feeds, rows = served.prepare(
                request.inputs, allow_nan=allow_nan, max_elements=max_elements
            )
            return request, feeds, rows

        if not encoding and _cheap_on_loop(body, header_length):
            return decode()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decoder, decode)


def _cheap_on_loop(body: bytes, header_length: int | None) -> bool:
    """Whether an uncompressed body is cheap enough to decode on the event loop: a small one,
    or a binary-extension one of numeric tensors within :data:`INLINE_BINARY_BYTES` (a header
    naming ``BYTES`` — encoded images, decoded in a thread — or holding an escape that could
    spell it goes to a thread)."""
    if header_length is None or not 0 < header_length <= len(body):
        return len(body) < OFFLOAD_BYTES and b'"BYTES"' not in body[:4096]
    if len(body) > INLINE_BINARY_BYTES or header_length >= OFFLOAD_BYTES:
        return False
    header = body[:header_length]
    return b"BYTES" not in header and b"\\" not in header


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: Sequence[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
