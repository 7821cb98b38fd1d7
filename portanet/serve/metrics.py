"""Prometheus metrics of a server (prometheus-client), in a registry of its own.

With several worker processes, prometheus-client's multiprocess mode is used (the supervisor
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start) and ``/metrics`` sums the workers.
"""

from __future__ import annotations

import os
from typing import Any

#: Latency buckets in seconds (0.5 ms … 10 s).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


def _size_buckets(largest: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < largest:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(max(largest, 1)))
    return tuple(buckets)


class Metrics:
    """Requests and errors by model and code, latency, batch sizes and queue depth."""

    def __init__(self, max_batch_size: int) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
        )

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        #: This process's RSS, CPU seconds, open files (process_* series).
        self.process = ProcessCollector(registry=self.registry)
        registry = None if self.multiprocess else self.registry
        kw: dict[str, Any] = {"registry": registry}
        self.requests = Counter(
            "portanet_requests",
            "Inference requests answered, by model and HTTP status code.",
            ["model", "code"],
            **kw,
        )
        self.errors = Counter(
            "portanet_errors",
            "Inference requests answered with an error, by model and HTTP status code.",
            ["model", "code"],
            **kw,
        )
        self.latency = Histogram(
            "portanet_request_duration_seconds",
            "Time from a request's arrival to its answer, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            **kw,
        )
        sizes = _size_buckets(max_batch_size)
        self.batch_rows = Histogram(
            "portanet_batch_rows",
            "Rows per onnxruntime run (dynamic batching coalesces requests).",
            ["model"],
            buckets=sizes,
            **kw,
        )
        self.batch_requests = Histogram(
            "portanet_batch_requests",
            "Requests per onnxruntime run.",
            ["model"],
            buckets=sizes,
            **kw,
        )
        gauge_kw = {**kw, "multiprocess_mode": "livesum"} if self.multiprocess else kw
        self.queue_depth = Gauge(
            "portanet_queue_depth", "Requests waiting for a batch, by model.", ["model"], **gauge_kw
        )
        self._children: dict[tuple[str, int], tuple[Any, Any | None, Any]] = {}

    def observe_request(self, model: str, code: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (model, code)
        children = self._children.get(key)
        if children is None:
            label = str(code)
            children = (
                self.requests.labels(model, label),
                self.errors.labels(model, label) if code >= 400 else None,
                self.latency.labels(model),
            )
            self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer ``GET /metrics`` with, and its content type."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
            registry.register(self.process)  # the answering worker's own
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
