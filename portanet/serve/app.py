"""The ASGI application speaking the Open Inference Protocol (REST, V2).

A plain ASGI callable with its own routing over the protocol's handful of paths: measured on
the 2-core machine, a framework's router and request/response objects halved the requests per
second a 1-row model could serve (see the README's serve section), and nothing else here needs
one. It runs under any ASGI server and mounts under another ASGI app (``root_path`` is honoured).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

import portanet
from portanet.errors import PortanetError
from portanet.serve.batching import Batcher
from portanet.serve.metrics import Metrics
from portanet.serve.protocol import (
    ProtocolError,
    build_infer_response,
    error_body,
    parse_infer_request,
)
from portanet.serve.repository import VERSION, ServedModel

log = logging.getLogger("portanet.serve")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = b"application/json"
_CLOSE = ((b"connection", b"close"),)


@dataclass(frozen=True)
class ServeOptions:
    """How the server batches, bounds and checks requests (the ``portanet serve`` options)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 2.0
    max_queue: int = 1024
    max_body_mb: float = 64.0
    allow_nan: bool = False


class ServeApp:
    """ASGI app serving :class:`ServedModel` objects; build it with :func:`create_app`."""

    def __init__(self, models: Sequence[ServedModel], options: ServeOptions) -> None:
        self.options = options
        self.models = {m.name: m for m in models}
        self.metrics = Metrics(options.max_batch_size)
        self.max_body = int(options.max_body_mb * 1024 * 1024)
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
        self._started = False

    def begin_drain(self) -> None:
        """Refuse new infer requests with 503 and report not ready; in-flight ones complete."""
        self.draining = True

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
        if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
            model = parts[2]
            rest = parts[3:]
            if len(rest) >= 2 and rest[0] == "versions":
                if rest[1] != VERSION or model not in self.models:
                    return await self._error(send, 404, self._unknown(model, rest[1]))
                rest = rest[2:]
            if rest == ["infer"] and method == "POST":
                return await self._infer(model, scope, receive, send)
            if method != "GET" or len(rest) > 1 or (rest and rest[0] not in ("ready",)):
                return await self._no_route(send, method, path)
            served = self.models.get(model)
            if served is None:
                return await self._error(send, 404, self._unknown(model))
            if rest:
                return await _respond(send, 200, b"")
            return await _respond(send, 200, orjson.dumps(served.metadata()))
        if method != "GET":
            return await self._no_route(send, method, path)
        if parts == ["v2", "health", "live"]:
            return await _respond(send, 200, b"")
        if parts == ["v2", "health", "ready"]:
            return await _respond(send, 503 if self.draining else 200, b"")
        if parts == ["v2"]:
            return await _respond(
                send,
                200,
                orjson.dumps(
                    {
                        "name": "portanet",
                        "version": portanet.__version__,
                        "extensions": ["binary_tensor_data"],
                    }
                ),
            )
        if parts == ["metrics"]:
            body, content_type = self.metrics.exposition()
            return await _respond(send, 200, body, content_type.encode())
        return await self._no_route(send, method, path)

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
        try:
            body, header_length = await self._read(scope, receive)
            request = parse_infer_request(body, header_length)
            feeds, rows = served.prepare(request.inputs, allow_nan=self.options.allow_nan)
            if request.outputs is not None:
                for item in request.outputs:
                    if item.name not in served.output_names:
                        raise ProtocolError(
                            f"model {model!r}: unknown output {item.name!r}; "
                            f"expected one of {served.output_names}"
                        )
            self.accepted += 1
            if rows == 0:
                results = served.model.run(feeds, allow_nan=True)
            else:
                results = await self._batchers[model].submit(feeds, rows)
            payload, json_length = build_infer_response(model, VERSION, request, results)
            self.completed += 1
            status = 200
            if json_length is None:
                headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", _JSON),)
            else:
                headers = (
                    (b"content-type", b"application/octet-stream"),
                    (b"inference-header-content-length", str(json_length).encode()),
                )
        except ProtocolError as exc:
            status, payload = exc.status, error_body(str(exc))
            headers = ((b"content-type", _JSON),)
            extra = _CLOSE if status == 413 else ()
        except PortanetError as exc:  # e.g. onnxruntime refusing a shape at run time
            status, payload = 400, error_body(f"model {model!r}: {exc}")
            headers = ((b"content-type", _JSON),)
        except Exception:  # never a traceback to the client; the server log has it
            log.exception("model %s: internal error answering an infer request", model)
            status = 500
            payload = error_body(
                f"model {model!r}: internal server error (the server log has the details)"
            )
            headers = ((b"content-type", _JSON),)
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

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, int | None]:
        """The whole request body (within the cap, decompressed) and the binary header length."""
        length = header_length = encoding = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"inference-header-content-length":
                header_length = value
            elif key == b"content-encoding":
                encoding = value.decode("latin-1").strip().lower()
        cap = self.max_body
        if length is not None and int(length) > cap:
            raise _too_large(int(length), cap)
        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            size = len(body)
            while message.get("more_body"):
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    raise _too_large(size, cap, at_least=True)
                chunks.append(chunk)
            body = b"".join(chunks)
        if len(body) > cap:
            raise _too_large(len(body), cap)
        if encoding and encoding != "identity":
            body = _decompress(body, encoding, cap)
        parsed = None
        if header_length is not None:
            try:
                parsed = int(header_length)
            except ValueError:
                raise ProtocolError(
                    f"expected Inference-Header-Content-Length as an integer, "
                    f"got {header_length.decode('latin-1')!r:.40}"
                ) from None
        return body, parsed


def _too_large(size: int, cap: int, at_least: bool = False) -> ProtocolError:
    got = f"more than {cap:,}" if at_least else f"{size:,}"
    return ProtocolError(
        f"expected a request body of at most {cap:,} bytes (the server's body cap), got {got}",
        status=413,
    )


def _decompress(body: bytes, encoding: str, cap: int) -> bytes:
    """gzip/deflate request bodies (the Triton client can send them), bounded by the cap."""
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(
            f"expected Content-Encoding gzip, deflate or identity, got {encoding!r:.40}", status=415
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise ProtocolError(
            f"expected a valid {encoding} body, got one zlib cannot read ({exc})"
        ) from None
    if len(out) > cap:
        raise _too_large(len(out), cap, at_least=True)
    return out


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: Sequence[tuple[bytes, bytes]] = (),
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
    await send({"type": "http.response.body", "body": body})
