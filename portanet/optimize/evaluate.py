"""How a candidate is judged: its outputs on held-out rows against the float32 model (and
Keras), label agreement for classifiers, and the budget it must stay inside (numpy only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.optimize.data import Feeds, rows_of, take
from portanet.optimize.timing import MARGIN, Latency, compare, summarize
from portanet.runtime import Model
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER, ModelSchema


@dataclass(frozen=True)
class Budget:
    """The accuracy a candidate must keep: max abs error against the float32 model (and Keras),
    and for classifiers the share of rows whose label is unchanged."""

    max_abs: float = 1e-3
    min_agreement: float = 0.99

    def check(self) -> None:
        """Refuse a budget that means nothing."""
        if not self.max_abs >= 0 or not 0 <= self.min_agreement <= 1:
            raise InputError(
                f"budget: expected max abs ≥ 0 and min agreement in [0, 1], got "
                f"{self.max_abs} and {self.min_agreement}"
            )

    def describe(self) -> str:
        """One phrase for messages."""
        return f"max abs ≤ {self.max_abs:g}, label agreement ≥ {self.min_agreement:g}"

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form (infinity becomes ``None``)."""
        return {
            "max_abs": self.max_abs if math.isfinite(self.max_abs) else None,
            "min_agreement": self.min_agreement,
        }


#: The candidate every other is measured against: the model as exported.
BASE = "float32"


@dataclass
class Candidate:
    """One variant of the model and what was measured on it."""

    name: str
    transforms: tuple[str, ...]
    size_bytes: int | None = None
    path: Path | None = None
    error: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    mean_abs: float | None = None
    agreement: float | None = None
    keras_max_abs: float | None = None
    latency: Latency | None = None
    throughput: Latency | None = None
    speedup: float | None = None
    throughput_speedup: float | None = None
    failed_checks: list[str] = field(default_factory=list)
    keras_agreement: float | None = None
    #: ``domain:op`` of operators outside standard ONNX (only onnxruntime runs them).
    nonstandard_ops: list[str] = field(default_factory=list)
    #: (low, high) of the per-slice speed-ups at batch 1 and at the throughput batch.
    speedup_spread: tuple[float, float] | None = None
    throughput_spread: tuple[float, float] | None = None
    #: Why it may not be chosen although built (e.g. onnxruntime-only ops with --ops standard).
    excluded: str | None = None
    #: What the int8 search tried (recipe, float nodes, steps).
    int8: dict[str, Any] | None = None

    @property
    def portability(self) -> str:
        """``standard`` (any ONNX runtime) or ``onnxruntime-only``."""
        return "onnxruntime-only" if self.nonstandard_ops else "standard"

    @property
    def within_budget(self) -> bool:
        """Built, measured and inside every limit of the budget."""
        return self.error is None and self.max_abs is not None and not self.failed_checks

    def verdict(self) -> str:
        """Why it is in or out, in a few words."""
        if self.error:
            return f"could not be built or run ({self.error})"
        if self.excluded and self.within_budget:
            return self.excluded
        return "inside the budget" if self.within_budget else "; ".join(self.failed_checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "transforms": list(self.transforms),
            "size_bytes": self.size_bytes,
            "error": self.error,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_abs": self.mean_abs,
            "agreement": self.agreement,
            "keras_max_abs": self.keras_max_abs,
            "latency": self.latency.to_dict() if self.latency else None,
            "throughput": self.throughput.to_dict() if self.throughput else None,
            "speedup": self.speedup,
            "throughput_speedup": self.throughput_speedup,
            "within_budget": self.within_budget,
            "failed_checks": self.failed_checks,
            "keras_agreement": self.keras_agreement,
            "portability": self.portability,
            "nonstandard_ops": self.nonstandard_ops,
            "speedup_spread": list(self.speedup_spread) if self.speedup_spread else None,
            "throughput_spread": list(self.throughput_spread) if self.throughput_spread else None,
            "excluded": self.excluded,
            "int8": self.int8,
        }


#: Rows per evaluation call at most, and input values per call at most (8 images of 224×224):
#: bounds the activations one call allocates.
EVALUATION_CHUNK = 32
CHUNK_VALUES = 8 * 224 * 224 * 3


def chunk_rows(feeds: Feeds) -> int:
    """Rows per call that keep within :data:`EVALUATION_CHUNK` rows and :data:`CHUNK_VALUES`
    input values (at least 1)."""
    per_row = sum(int(np.prod(v.shape[1:], dtype=np.int64)) for v in feeds.values())
    return max(1, min(EVALUATION_CHUNK, CHUNK_VALUES // max(1, per_row)))


def outputs_on(model: Model, feeds: Feeds, fixed_batch: int | None) -> dict[str, np.ndarray]:
    """Every output of ``model`` on ``feeds``, run in chunks of at most :data:`EVALUATION_CHUNK`
    rows and :data:`CHUNK_VALUES` input values
    (of the graph's fixed batch, the last chunk padded by repeating rows and the padding
    dropped from the result)."""
    rows = rows_of(feeds)
    step = fixed_batch or chunk_rows(feeds)
    parts = []
    for start in range(0, rows, step):
        index = (
            np.arange(start, start + step) % rows
            if fixed_batch
            else np.arange(start, min(start + step, rows))
        )
        got = model.run(take(feeds, index), allow_nan=True)
        parts.append({k: v[: min(step, rows - start)] for k, v in got.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def labels(values: np.ndarray, schema: ModelSchema) -> np.ndarray | None:
    """Class decisions of a classifier's output, ``None`` for other tasks."""
    flat = values.reshape(len(values), -1)
    if schema.task == BINARY_CLASSIFIER and flat.shape[1] == 1:
        threshold = schema.threshold if schema.threshold is not None else 0.5
        return flat[:, 0] >= threshold
    if schema.task == MULTICLASS_CLASSIFIER and flat.shape[1] > 1:
        return np.asarray(flat.argmax(axis=1))
    return None


def _errors(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
) -> tuple[float, float, float]:
    """Max abs, max rel and mean abs error over every output (NaN where one side has it
    and the other not counts as infinite)."""
    worst_abs = worst_rel = 0.0
    total = count = 0.0
    for name, ref in reference.items():
        r = np.asarray(ref, dtype=np.float64)
        c = np.asarray(candidate[name], dtype=np.float64)
        if r.shape != c.shape:
            raise InputError(
                f"output {name!r}: expected shape {r.shape} like the float32 model, got {c.shape}"
            )
        diff = np.abs(r - c)
        diff = np.where(np.isnan(r) & np.isnan(c), 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        if diff.size:
            worst_abs = max(worst_abs, float(diff.max()))
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(r), 1e-12))
            worst_rel = max(worst_rel, float(rel.max()))
            total += float(diff.sum())
            count += diff.size
    return worst_abs, worst_rel, total / count if count else 0.0


def measure_errors(
    candidate: Candidate,
    reference: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    keras: dict[str, np.ndarray] | None,
    schema: ModelSchema,
    budget: Budget,
) -> None:
    """Fill ``candidate``'s error figures and the budget checks it fails."""
    candidate.max_abs, candidate.max_rel, candidate.mean_abs = _errors(reference, got)
    if candidate.max_abs > budget.max_abs:
        candidate.failed_checks.append(f"max abs {candidate.max_abs:.3g} > {budget.max_abs:g}")
    if keras is not None:
        candidate.keras_max_abs = _errors(keras, got)[0]
        if candidate.keras_max_abs > budget.max_abs:
            candidate.failed_checks.append(
                f"max abs vs Keras {candidate.keras_max_abs:.3g} > {budget.max_abs:g}"
            )
        if len(keras) == 1 and len(reference) == 1:
            want = labels(next(iter(keras.values())), schema)
            have = labels(next(iter(got.values())), schema)
            if want is not None and have is not None and len(want):
                candidate.keras_agreement = float(np.mean(want == have))
    if len(reference) == 1:
        name = next(iter(reference))
        want, have = labels(reference[name], schema), labels(got[name], schema)
        if want is not None and have is not None and len(want):
            candidate.agreement = float(np.mean(want == have))
            if candidate.agreement < budget.min_agreement:
                candidate.failed_checks.append(
                    f"label agreement {candidate.agreement:.4f} < {budget.min_agreement:g}"
                )


def real_gain(candidate: Candidate, goal: str) -> bool:
    """Faster than float32 beyond the measured spread: the low end of the per-slice speed-ups
    at the ``goal``'s batch clears 1 + :data:`~portanet.optimize.timing.MARGIN`."""
    spread = candidate.speedup_spread if goal == "latency" else candidate.throughput_spread
    return spread is not None and spread[0] > 1 + MARGIN


def tiled(feeds: Feeds, rows: int) -> Feeds:
    """``rows`` rows taken cyclically from ``feeds`` (a timing batch of any size)."""
    index = np.arange(rows) % rows_of(feeds)
    return take(feeds, index)


def time_candidates(
    candidates: list[Candidate],
    models: dict[str, Model],
    evaluation: Feeds,
    batch: int,
    big: int,
    seconds: float,
) -> None:
    """Batch-1 and throughput timings, alternating, each paired with the float32 model."""
    ready = [c for c in candidates if c.error is None and c.name in models]
    sizes = [(batch, "latency")] + ([(big, "throughput")] if big != batch else [])
    for size, attribute in sizes:
        feeds = tiled(evaluation, size)
        calls: dict[str, Callable[[], Any]] = {
            c.name: partial(models[c.name].run, feeds, allow_nan=True) for c in ready
        }
        share = seconds / len(sizes)
        found = compare(calls, base=BASE, seconds=share)
        for c in ready:
            setattr(c, attribute, summarize(size, found.samples[c.name]))
            if c.name == BASE:
                continue
            low, mid, high = found.speedup(c.name)
            if attribute == "latency":
                c.speedup, c.speedup_spread = mid, (low, high)
            else:
                c.throughput_speedup, c.throughput_spread = mid, (low, high)
    for c in ready:
        if big == batch:
            c.throughput, c.throughput_speedup = c.latency, c.speedup
            c.throughput_spread = c.speedup_spread
    candidates[0].speedup = candidates[0].throughput_speedup = 1.0
