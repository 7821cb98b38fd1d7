"""Every ``portanet serve`` setting and its default, defined once: the CLI builds a
:class:`ServeOptions` from its flags, the library (:func:`portanet.serve.serve`,
:func:`portanet.serve.create_app`) takes it."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from portanet.errors import InputError


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens, batches, bounds and checks requests, and how it stops.

    Checked when built: a bad value raises :class:`portanet.errors.InputError` naming the flag.
    """

    #: Address to listen on.
    host: str = "127.0.0.1"
    #: Port to listen on (0: any free port; the startup line names it).
    port: int = 8000
    #: Model name in the URLs when one model is served (default: the file stem).
    name: str | None = None
    #: onnxruntime execution providers ("auto" or their names in order).
    providers: str | tuple[str, ...] = "auto"
    #: Refuse to start when the first provider is not available.
    strict: bool = False
    #: onnxruntime intra-op threads per session (None: portanet's default).
    threads: int | None = None
    #: onnxruntime sessions per model per worker, running batches side by side (None: one
    #: single-threaded session per CPU the worker may use, unless ``threads`` is given).
    sessions: int | None = None
    #: Most rows per onnxruntime run when coalescing requests (1: no batching).
    max_batch_size: int = 64
    #: Longest a request waits for others to batch with, in milliseconds.
    max_queue_delay_ms: float = 2.0
    #: Most requests waiting per model; more get 503.
    max_queue: int = 1024
    #: Largest request body in MiB, before and after decompression; larger ones get 413.
    max_body_mb: float = 64.0
    #: Most tensor elements one request may declare (all inputs together); more get 413.
    #: A JSON value costs ~32 bytes of Python objects while parsed: 4M keeps that near 128 MB.
    max_elements: int = 4_000_000
    #: Let NaN/Inf inputs through instead of answering 400.
    allow_nan: bool = False
    #: Port of the KServe V2 gRPC service (None: no gRPC; 0: any free port).
    grpc_port: int | None = None
    #: Server processes sharing the port (each loads the models; dead ones are restarted).
    workers: int = 1
    #: Seconds SIGTERM may take in total: draining in-flight requests, then exiting.
    drain_timeout: float = 30.0
    #: Seconds a client may take to send a request's headers, and between body chunks.
    read_timeout: float = 10.0
    #: Seconds an idle keep-alive connection stays open.
    keep_alive_timeout: float = 5.0
    #: Most open connections per worker; more are answered 503 (None: from the file limit).
    max_connections: int | None = None
    #: Log a traceback for every 500 and info lines.
    debug: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.providers, list):
            object.__setattr__(self, "providers", tuple(self.providers))

        def refuse(flag: str, expected: str, got: object) -> None:
            raise InputError(f"--{flag}: expected {expected}, got {got!r}")

        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            refuse("port", "a port from 1 to 65535 (or 0 for any free port)", self.port)
        if self.grpc_port is not None and (
            not isinstance(self.grpc_port, int) or not 0 <= self.grpc_port <= 65535
        ):
            refuse("grpc-port", "a port from 1 to 65535 (or 0 for any free port)", self.grpc_port)
        if self.grpc_port is not None and self.workers > 1:
            refuse("grpc-port", "--workers 1 (gRPC is served by a single process)", self.grpc_port)
        positive = {
            "max-body-mb": self.max_body_mb,
            "drain-timeout": self.drain_timeout + 1,  # 0 allowed: exit at once
            "read-timeout": self.read_timeout,
            "keep-alive-timeout": self.keep_alive_timeout,
        }
        for flag, value in positive.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                shown = value - 1 if flag == "drain-timeout" else value
                refuse(flag, "a positive number", shown)
        if self.max_queue_delay_ms < 0 or not math.isfinite(self.max_queue_delay_ms):
            refuse("max-queue-delay-ms", "a number >= 0", self.max_queue_delay_ms)
        at_least_one = {
            "max-batch-size": self.max_batch_size,
            "max-queue": self.max_queue,
            "max-elements": self.max_elements,
            "workers": self.workers,
            "max-connections": 1 if self.max_connections is None else self.max_connections,
            "threads": 1 if self.threads is None else self.threads,
            "sessions": 1 if self.sessions is None else self.sessions,
        }
        for flag, count in at_least_one.items():
            if not isinstance(count, int) or count < 1:
                refuse(flag, "an integer of at least 1", count)

    def session_layout(self, cpus: int) -> tuple[int, int | None]:
        """(sessions per model, threads per session) for a worker given ``cpus`` CPUs."""
        share = max(1, cpus // self.workers)
        if self.sessions is not None:
            return self.sessions, self.threads or max(1, share // self.sessions)
        if self.threads is not None:
            return 1, self.threads
        return share, 1

    @property
    def max_body_bytes(self) -> int:
        """The body cap in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    def describe(self) -> str:
        """The non-default settings, for the log."""
        default = ServeOptions()
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return ", ".join(changed) or "defaults"
