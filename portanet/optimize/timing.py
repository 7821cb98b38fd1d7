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


#: A candidate is faster only when the low end of its per-slice speed-ups clears 1 + this.
MARGIN = 0.05
#: The low end of the spread: this percentile of the per-slice speed-ups.
LOW_PERCENTILE = 20


@dataclass
class Comparison:
    """Per-call timings of each callable and, per alternating slice, its speed-up over the
    baseline timed just before it (median call time of the baseline's slice ÷ its own)."""

    samples: dict[str, list[float]]
    ratios: dict[str, list[float]]

    def speedup(self, name: str) -> tuple[float, float, float]:
        """(low, median, high) of ``name``'s per-slice speed-ups: the 20th, 50th and 80th
        percentiles — the spread a decision must clear."""
        values = np.asarray(self.ratios[name], dtype=np.float64)
        low, mid, high = np.percentile(values, [LOW_PERCENTILE, 50, 100 - LOW_PERCENTILE])
        return float(low), float(mid), float(high)

    def decided(self, name: str, margin: float = MARGIN) -> bool:
        """Whether more slices could no longer change the verdict: the spread lies wholly
        above 1 + margin, or its median is not above it."""
        low, mid, _ = self.speedup(name)
        return low > 1 + margin or mid <= 1 + margin


def compare(
    calls: dict[str, Callable[[], Any]],
    *,
    base: str,
    seconds: float,
    min_rounds: int = 6,
    max_rounds: int = 18,
    margin: float = MARGIN,
    warmup: int = 2,
    pause: float = 0.02,
) -> Comparison:
    """Time ``calls`` in alternating slices (about ``seconds / min_rounds`` each) and pair
    every slice with the baseline ``base``'s slice of the same round, so a noisy neighbour
    slows both alike. After ``min_rounds``, rounds continue (up to ``max_rounds``) while a
    candidate's verdict is undecided (:meth:`Comparison.decided`)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    ratios: dict[str, list[float]] = {name: [] for name in calls if name != base}
    comparison = Comparison(samples, ratios)
    share = seconds / min_rounds
    for round_ in range(max_rounds):
        medians = {}
        for name, call in calls.items():
            time.sleep(pause)
            got = time_calls(call, seconds=share, warmup=warmup if round_ == 0 else 0, min_calls=2)
            samples[name] += got
            medians[name] = float(np.median(got))
        for name in ratios:
            ratios[name].append(medians[base] / medians[name] if medians[name] > 0 else 0.0)
        if round_ + 1 >= min_rounds and all(comparison.decided(n, margin) for n in ratios):
            break
    return comparison
