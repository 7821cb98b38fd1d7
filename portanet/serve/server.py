"""Running the app: uvicorn (uvloop + httptools), a bounded graceful drain on SIGTERM, and an
optional supervised pool of worker processes sharing one listening socket.

The drain is bounded in total by ``drain_timeout``: new requests get 503 at once, in-flight
ones may finish until shortly before the deadline, then those still waiting are answered 503
with a protocol error body, uvicorn gets what is left to close, and a watchdog thread ends the
process at the deadline whatever the event loop is doing. A second signal exits at once.
Nothing on the exit path depends on stderr being writable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portanet.errors import InputError
from portanet.serve.app import ServeApp
from portanet.serve.exits import FORCED_EXIT, SafeStream, exit_now
from portanet.serve.factory import create_app
from portanet.serve.options import ServeOptions

log = logging.getLogger("portanet.serve")
Say = Callable[[str], None]


def configure_logging(debug: bool) -> None:
    """Timestamped lines on stderr for portanet's and uvicorn's loggers, never raising."""
    logging.raiseExceptions = False
    handler = logging.StreamHandler(SafeStream())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    for name in ("portanet.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO if debug else logging.WARNING)


#: glibc's malloc: blocks up to this size come from the heap instead of their own mmap, and
#: the heap keeps up to TRIM_BYTES free at its top instead of returning it to the system.
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_BYTES = 32 * 1024 * 1024


def tune_malloc() -> bool:
    """Keep request-sized buffers (a 0.6 MB image tensor, a 3 MB JSON body, their copies) in
    glibc's heap between requests. By default each is a fresh ``mmap`` whose pages fault in
    one by one and go back with ``munmap`` when freed: measured, 590 µs of server CPU per
    0.6 MB request in uvicorn alone, 180 µs with these two settings (the heap holds at most
    TRIM_BYTES of free memory per arena). Not glibc, or ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` set by the operator: nothing changes. True when applied."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(
            libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES)
            and libc.mallopt(m_trim_threshold, TRIM_BYTES)
        )
    except (OSError, AttributeError):
        return False


def _say(line: str) -> None:
    log.warning(line) if line.startswith("portanet serve: error") else log.info(line)


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to build the app again in a worker process (picklable)."""

    sources: tuple[str, ...]
    options: ServeOptions = field(default_factory=ServeOptions)

    def build(self) -> ServeApp:
        """Load the models and return the ASGI app."""
        return create_app(list(self.sources), self.options)


def _raise_file_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft if soft != resource.RLIM_INFINITY else 65536)


def max_connections(options: ServeOptions) -> int:
    """Connections served at once per worker; beyond it uvicorn answers 503."""
    if options.max_connections is not None:
        return options.max_connections
    return max(16, _raise_file_limit() - 128)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one portanet error naming the port and the flag."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise InputError(
            f"--host {host} --port {port}: expected an address this machine can listen on, "
            f"got {reason!r} (another server on that port? choose another --port, or "
            f"--port 0 for any free one)"
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, options: ServeOptions, drain_left: float) -> Any:
    import uvicorn

    from portanet.serve.http import timed_protocol

    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=timed_protocol(options.read_timeout, options.max_body_bytes),
        timeout_keep_alive=max(1, round(options.keep_alive_timeout)),
        timeout_graceful_shutdown=max(0, int(drain_left)),
        limit_concurrency=max_connections(options),
        server_header=False,
        date_header=False,
    )


def make_server(
    config: Any,
    app: ServeApp,
    options: ServeOptions,
    on_bound: Callable[..., Any],
    on_drained: Callable[[float], None] | None = None,
) -> Any:
    """A uvicorn server whose SIGTERM/SIGINT starts the bounded drain; ``on_drained(left)`` is
    called with the seconds left once the drain is over (to stop other listeners)."""
    import uvicorn

    total = options.drain_timeout
    margin = min(1.0, total * 0.2)

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT: 503 for new requests, drain, cut at the deadline, exit."""

        loop: asyncio.AbstractEventLoop | None = None
        drain_started = False

        async def startup(self, sockets: list[Any] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)
            if self.started:
                on_bound(self)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.drain_started or self.loop is None:
                self.force_exit = self.should_exit = True
                if self.drain_started:  # a second signal: exit now
                    exit_now(FORCED_EXIT)
                return
            self.drain_started = True
            began = time.monotonic()
            watchdog = threading.Timer(total, exit_now, (FORCED_EXIT,))
            watchdog.daemon = True
            watchdog.start()
            inflight = app.inflight
            app.begin_drain()
            self.loop.call_soon_threadsafe(
                lambda: self.loop.create_task(self._drain(sig, inflight, began))  # type: ignore[union-attr]
            )

        async def _drain(self, sig: int, inflight: int, began: float) -> None:
            try:
                _say(
                    f"portanet serve: {signal.Signals(sig).name}: draining ({inflight} requests "
                    f"in flight); new requests get 503; exiting within {total:g} s"
                )
                drained = await app.wait_drained(max(0.0, total - margin))
                if not drained:
                    app.cut(f"the server's drain timeout ({total:g} s) ran out")
                state = "drained" if drained else f"drain timed out after {total - margin:g} s"
                _say(
                    f"portanet serve: {state}; {app.accepted} infer requests accepted, "
                    f"{app.completed} answered; exiting"
                )
            finally:
                left = total - (time.monotonic() - began)
                if on_drained is not None:
                    on_drained(max(0.0, left - margin))
                # uvicorn hands this to asyncio.timeout, which takes fractions of a second
                self.config.timeout_graceful_shutdown = max(0.0, left - margin / 2)  # type: ignore[assignment]
                self.should_exit = True

    return DrainingServer(config)


def describe(app: ServeApp, url: str, workers: int) -> str:
    """The startup line: what is served where, and how."""
    models = "; ".join(
        f"{m.name} from {m.path} on {m.model.providers[0]} x{len(m.sessions)} sessions "
        f"(POST {url}/v2/models/{m.name}/infer)"
        for m in app.models.values()
    )
    o = app.options
    batching = (
        f"batching up to {o.max_batch_size} rows waiting at most {o.max_queue_delay_ms:g} ms"
        if o.max_batch_size > 1
        else "batching off"
    )
    return (
        f"portanet serve: serving {models}; {batching}; queue {o.max_queue}; {workers} "
        f"worker{'s' if workers != 1 else ''}; metrics at {url}/metrics"
    )


def url_of(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def worker_main(spec: ServerSpec, sock: socket.socket, ready: Any) -> None:
    """One worker process of ``--workers N``: serve ``spec``'s app on the shared socket."""
    options = spec.options
    # Stopped before it serves: nothing to drain (uvicorn installs the draining handler later).
    signal.signal(signal.SIGTERM, lambda sig, frame: os._exit(0))
    tune_malloc()
    configure_logging(options.debug)
    app = spec.build()
    config = uvicorn_config(app, options, options.drain_timeout)
    server = make_server(config, app, options, lambda _: ready.put(os.getpid()))
    server.run(sockets=[sock])


def run_server(spec: ServerSpec) -> int:
    """Serve until SIGTERM/SIGINT, then drain and return the exit status (0 when drained).

    ``port=0`` lets the system choose a free port; the startup line names the one bound.
    """
    options = spec.options
    tune_malloc()
    configure_logging(options.debug)
    sock = bind(options.host, options.port)  # a taken port fails before any model loads
    folder = None
    try:
        if options.workers > 1:
            from portanet.serve.supervisor import prepare_metrics_dir, run_workers

            folder = prepare_metrics_dir()  # before prometheus-client is first imported
        app = spec.build()  # load here first: a bad model fails before any worker starts
        port = sock.getsockname()[1]
        if options.workers > 1:
            return run_workers(
                spec, app, sock, describe(app, url_of(options.host, port), 0), worker_main
            )
        grpc = None
        if options.grpc_port is not None:
            from portanet.serve.grpc_service import GrpcServer

            grpc = GrpcServer(app, options.host, options.grpc_port)
        line = describe(app, url_of(options.host, port), 1)
        if grpc is not None:
            line += f"; gRPC at {options.host}:{grpc.port}"

        def bound(server: Any) -> None:
            if grpc is not None:
                grpc.start(server.loop)
            _say(line)

        config = uvicorn_config(app, options, options.drain_timeout)
        server = make_server(config, app, options, bound, grpc.stop if grpc is not None else None)
        server.run(sockets=[sock])
        return 0 if server.started else 1
    finally:
        sock.close()
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
