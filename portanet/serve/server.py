"""Running the app: uvicorn (uvloop + httptools when installed), graceful drain on SIGTERM,
and an optional pool of worker processes sharing one listening socket."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from portanet.errors import InputError
from portanet.serve.app import ServeApp, ServeOptions
from portanet.serve.factory import create_app

Say = Callable[[str], None]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to build the app again in a worker process (picklable)."""

    sources: tuple[str, ...]
    name: str | None = None
    providers: str | tuple[str, ...] = "auto"
    threads: int | None = None
    strict: bool = False
    options: ServeOptions = field(default_factory=ServeOptions)

    def build(self) -> ServeApp:
        """Load the models and return the ASGI app."""
        return create_app(
            list(self.sources),
            name=self.name,
            providers=self.providers,
            threads=self.threads,
            strict=self.strict,
            **asdict(self.options),
        )


def _uvicorn_config(app: Any, host: str, port: int, drain_timeout: float) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # uvicorn annotates int but hands it to asyncio.wait_for, which takes any seconds
        timeout_graceful_shutdown=drain_timeout,  # type: ignore[arg-type]
        server_header=False,
        date_header=False,
    )


def _make_server(
    config: Any,
    app: ServeApp,
    drain_timeout: float,
    say: Say | None,
    on_bound: Callable[[Any], None] | None,
) -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT: answer new requests 503, finish in-flight ones, then exit 0."""

        loop: asyncio.AbstractEventLoop | None = None
        drain_started = False

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)
            if self.started and on_bound is not None:
                on_bound(self)

        def handle_exit(self, sig: int, frame: Any) -> None:
            # Not recorded as a captured signal: a drained server exits with status 0.
            if self.drain_started or self.loop is None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True
                return
            self.drain_started = True
            inflight = app.inflight
            app.begin_drain()
            loop = self.loop
            loop.call_soon_threadsafe(lambda: loop.create_task(self._drain(sig, inflight)))

        async def _drain(self, sig: int, inflight: int) -> None:
            if say:
                say(
                    f"portanet serve: {signal.Signals(sig).name}: draining ({inflight} "
                    f"requests in flight); new requests get 503"
                )
            drained = await app.wait_drained(drain_timeout)
            if say:
                state = "drained" if drained else f"drain timed out after {drain_timeout:g} s"
                say(
                    f"portanet serve: {state}; {app.accepted} infer requests accepted, "
                    f"{app.completed} answered; exiting"
                )
            self.should_exit = True

    return DrainingServer(config)


def _describe(app: ServeApp, url: str, workers: int) -> str:
    models = "; ".join(
        f"{m.name} from {m.path} on {m.model.providers[0]} (POST {url}/v2/models/{m.name}/infer)"
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


def _url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def run_server(
    spec: ServerSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    drain_timeout: float = 30.0,
    say: Say | None = _stderr,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain and return the exit status (0 when drained).

    ``port=0`` lets the system choose a free port; the startup line (through ``say``) names
    the one really bound.
    """
    if workers < 1:
        raise InputError(f"workers: expected at least 1, got {workers}")
    app = spec.build()  # load in this process first: a bad model fails before anything runs
    if workers == 1:
        config = _uvicorn_config(app, host, port, drain_timeout)

        def bound(server: Any) -> None:
            sockname = server.servers[0].sockets[0].getsockname()
            if say:
                say(_describe(app, _url(host, sockname[1]), 1))

        server = _make_server(config, app, drain_timeout, say, bound)
        server.run()
        return 0 if server.started else 1
    return _run_workers(spec, app, host, port, workers, drain_timeout, say)


def _worker_main(spec: ServerSpec, sock: Any, host: str, drain_timeout: float, ready: Any) -> None:
    app = spec.build()
    config = _uvicorn_config(app, host, sock.getsockname()[1], drain_timeout)
    server = _make_server(config, app, drain_timeout, None, lambda _: ready.put(os.getpid()))
    server.run(sockets=[sock])


def _run_workers(
    spec: ServerSpec,
    app: ServeApp,
    host: str,
    port: int,
    workers: int,
    drain_timeout: float,
    say: Say | None,
) -> int:
    """Worker processes sharing one socket; SIGTERM is passed on and each worker drains."""
    metrics_dir = tempfile.mkdtemp(prefix="portanet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker starts
    config = _uvicorn_config(None, host, port, drain_timeout)
    sock = config.bind_socket()
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    processes = [
        context.Process(
            target=_worker_main,
            name=f"portanet-serve-{i}",
            args=(spec, sock, host, drain_timeout, ready),
        )
        for i in range(workers)
    ]
    stopping: list[int] = []

    def forward(sig: int, frame: Any) -> None:
        stopping.append(sig)
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM if len(stopping) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        started = 0
        while started < workers and not stopping and all(p.is_alive() for p in processes):
            try:
                ready.get(timeout=0.2)
                started += 1
            except queue.Empty:
                pass
        if say and started == workers:
            say(_describe(app, _url(host, sock.getsockname()[1]), workers))
        for process in processes:
            process.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if say:
        say(f"portanet serve: {workers} workers exited with {[p.exitcode for p in processes]}")
    return 0 if all(p.exitcode == 0 for p in processes) else 1
