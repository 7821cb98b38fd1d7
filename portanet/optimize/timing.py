"""Latency measurement shared by ``optimize`` and ``bench`` (numpy only).

Warm-up calls are excluded; each call is timed on its own with ``perf_counter`` so percentiles
mean what they say. Candidates compared in one run are timed in alternating rounds, so that a
noisy neighbour slows them all alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Calls per measurement at most (bounds a very fast model's loop).
MAX_CALLS = 200_000


@dataclass
class Latency:
    """Timings of one callable at one batch size (seconds per call)."""

    batch: int
    calls: int
    total_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    mean_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows per second of a typical call (batch ÷ p50): robust to the pauses a shared
        machine inflicts on a few calls."""
        return self.batch / self.p50_s if self.p50_s > 0 else 0.0

    @property
    def rows_per_s_total(self) -> float:
        """Rows per second over all timed calls (total rows ÷ total time, pauses included)."""
        return self.batch * self.calls / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, in milliseconds."""
        return {
            "batch": self.batch,
            "calls": self.calls,
            "p50_ms": self.p50_s * 1e3,
            "p90_ms": self.p90_s * 1e3,
            "p99_ms": self.p99_s * 1e3,
            "mean_ms": self.mean_s * 1e3,
            "rows_per_s": self.rows_per_s,
            "rows_per_s_total": self.rows_per_s_total,
        }


def summarize(batch: int, samples: list[float]) -> Latency:
    """Percentiles and throughput of per-call timings ``samples`` (seconds)."""
    values = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return Latency(
        batch,
        int(values.size),
        float(values.sum()),
        float(p50),
        float(p90),
        float(p99),
        float(values.mean()),
    )


def time_calls(
    call: Callable[[], Any],
    *,
    seconds: float,
    warmup: int = 2,
    min_calls: int = 3,
    max_calls: int = MAX_CALLS,
) -> list[float]:
    """Per-call timings of ``call`` for about ``seconds`` (at least ``min_calls`` calls, at
    most ``max_calls``), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while len(samples) < max_calls and (len(samples) < min_calls or clock() < deadline):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def alternating(
    calls: dict[str, Callable[[], Any]],
    *,
    seconds: float,
    rounds: int = 5,
    warmup: int = 2,
    pause: float = 0.02,
) -> dict[str, list[float]]:
    """Time several callables for about ``seconds`` each, in ``rounds`` alternating slices
    (warm-up before the first slice of each). A short ``pause`` before each slice lets the
    previous callable's thread pool stop spinning, so it does not steal the next one's cores."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(rounds):
        for name, call in calls.items():
            if len(calls) > 1:
                time.sleep(pause)
            samples[name] += time_calls(
                call, seconds=seconds / rounds, warmup=warmup if round_ == 0 else 0, min_calls=2
            )
    return samples
