"""``--workers N``: worker processes sharing one listening socket, restarted when they die.

uvicorn 0.55's own supervisor (``uvicorn.supervisors.Multiprocess``) also restarts dead workers,
but it builds a plain ``uvicorn.Server`` in each worker from an import string, so the bounded
drain (503 for new requests, protocol error bodies for the ones the deadline cuts, the watchdog)
could not run there without patching uvicorn; gunicorn would add a dependency and its own
signal semantics for the same loop. This loop is that small part: start N, restart any that
dies (a log line and ``portanet_worker_restarts_total``), pass SIGTERM on, bound the drain.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portanet.serve.app import ServeApp

log = logging.getLogger("portanet.serve")
#: Exit status when a worker could not start (its log lines say why).
START_FAILED = 3


def prepare_metrics_dir() -> str:
    """The folder prometheus-client's multiprocess mode shares, set before any metric exists."""
    folder = tempfile.mkdtemp(prefix="portanet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def run_workers(
    spec: Any, app: ServeApp, sock: socket.socket, line: str, worker_main: Callable[..., None]
) -> int:
    """Run ``spec.options.workers`` workers on ``sock`` until SIGTERM/SIGINT; restart the dead.
    ``spec`` is the server's :class:`~portanet.serve.server.ServerSpec`; each worker process
    runs ``worker_main(spec, sock, ready)`` (the server module's, passed in so that this module
    does not import it back)."""
    from prometheus_client import Counter

    options = spec.options
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    restarts = Counter(
        "portanet_worker_restarts", "Worker processes restarted after they died.", registry=None
    )
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    processes: list[Any] = []
    stopping: list[int] = []

    def start(index: int) -> Any:
        process = context.Process(
            target=worker_main, name=f"portanet-serve-{index}", args=(spec, sock, ready)
        )
        process.start()
        log.info("portanet serve: worker %d started (pid %s)", index, process.pid)
        return process

    def kill_all_and_exit() -> None:
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        from portanet.serve.exits import FORCED_EXIT, exit_now

        exit_now(FORCED_EXIT)

    def on_signal(sig: int, frame: Any) -> None:
        stopping.append(sig)
        if len(stopping) > 1:
            kill_all_and_exit()
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        watchdog = threading.Timer(options.drain_timeout + 0.5, kill_all_and_exit)
        watchdog.daemon = True
        watchdog.start()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        processes.extend(start(i) for i in range(options.workers))
        started = 0
        while started < options.workers and not stopping:
            if any(p.exitcode is not None for p in processes):
                log.error(
                    "portanet serve: error: a worker exited with %s before it was ready",
                    [p.exitcode for p in processes],
                )
                status = START_FAILED
                on_signal(signal.SIGTERM, None)
                break
            try:
                log.info("portanet serve: worker pid %s ready", ready.get(timeout=0.2))
                started += 1
            except queue.Empty:
                pass
        if started == options.workers:
            log.info(line.replace("; 0 workers;", f"; {options.workers} workers;"))
        while not stopping and status == 0:
            with contextlib.suppress(queue.Empty):
                log.info("portanet serve: worker pid %s ready", ready.get(timeout=0.2))
            for index, process in enumerate(processes):
                if process.exitcode is None or stopping:
                    continue
                log.warning(
                    "portanet serve: worker %d (pid %s) died with exit status %s; restarting it",
                    index,
                    process.pid,
                    process.exitcode,
                )
                _mark_dead(process.pid)
                processes[index] = start(index)
                restarts.inc()
        for process in processes:
            process.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    codes = [p.exitcode for p in processes]
    log.info("portanet serve: %d workers exited with %s", len(processes), codes)
    if status:
        return status
    return 0 if all(code == 0 for code in codes) else 1


def _mark_dead(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped upstream
