"""The int8 search's latency-aware step: keep in float the layers whose int8 kernel is not
faster than their float one, when the whole model gets measurably faster and stays inside the
budget.

onnxruntime's int8 kernels do not pay everywhere: measured on the Teachable Machine MobileNet
at batch 1 on one thread, its first convolution (3 input channels: 27-value dot products) and
its depthwise convolutions run slower as ``QLinearConv`` than as float ``Conv``. Which layers
those are depends on the model, the CPU and the batch, so they are measured, not named:

1. Both the float model and the int8 model the accuracy search settled on are profiled with
   onnxruntime's own profiler at the goal's batch
   (:func:`~portanet.optimize.node_times.node_times`), and every quantized convolution or
   matrix product whose int8 time (its fused kernel and the quantize/dequantize nodes around
   it) is not below its float time by more than ``margin`` is *slow*.
2. A layer kept in float between int8 ones costs a dequantize before it, a quantize after it and
   often a layout change (the int8 kernels run channels-last): measured on the MobileNet, its 17
   depthwise convolutions in float made the model no faster at all (×0.98 over float32 against
   ×1.31 all-int8). So the slow layers are tried in *runs* — consecutive slow layers in graph
   order, whose boundaries are shared — most profiled time saved first, each run added to what
   was kept before; a run saving less than ``min_share`` of the int8 model's profiled time is not
   tried (whole-model timing cannot tell it from noise).
3. Each try is judged on the selection rows like every other step, then timed against the model
   before it in alternating paired slices (:func:`~portanet.optimize.timing.compare`); it is kept
   only when it is inside the budget and faster beyond the measured spread: the low end (20th
   percentile) of its per-slice speed-ups exceeds 1 + ``min_gain`` (0 by default: the margin
   was spent choosing the slow layers, and the file found must still clear 1 + ``MARGIN``
   against float32 like every candidate). Measured on the MobileNet under a load average of 4,
   a try the profile priced at 16 % of the time measured ×1.24 (1.03–1.50): real, but its low
   end under 1.05.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet.optimize.node_times import NodeTime, cpu_session, node_times, slow_nodes
from portanet.optimize.timing import MARGIN, compare

Feeds = dict[str, np.ndarray]
#: Builds the int8 model with these extra nodes kept in float, written to the target path.
Build = Callable[[list[str], Path], None]
#: Judges a built model on the selection rows: (label agreement or None, max abs, inside).
Judge = Callable[[Path], tuple[float | None, float, bool]]


@dataclass(frozen=True)
class SpeedCheck:
    """How the latency-aware step measures: rows per call (the goal's batch), threads per
    session, seconds of whole-model timing per try, the margin by which a layer's int8 kernel
    must beat its float one in the profile, the smallest share of the int8 model's profiled
    time a run must save to be tried, how many runs are tried at most, and the gain over the
    model before that the low end of a try's per-slice speed-ups must exceed to be kept."""

    batch: int = 1
    threads: int = 1
    seconds: float = 2.0
    margin: float = MARGIN
    min_share: float = 0.01
    max_tries: int = 3
    min_gain: float = 0.0


@dataclass
class Try:
    """One build of the step: the nodes kept float for speed, what the profile said they cost,
    the verdict on the selection rows and the whole model's speed-up over the model before."""

    nodes: list[str]
    int8_us: float
    float_us: float
    agreement: float | None
    max_abs: float
    inside: bool
    speedup: tuple[float, float, float] | None = None
    kept: bool = False

    def note(self, min_gain: float = 0.0) -> str:
        """What it bought, in words (the table's note)."""
        shown = ", ".join(_short(n) for n in self.nodes[:3]) + ("…" if len(self.nodes) > 3 else "")
        text = (
            f"kept float for speed: {len(self.nodes)} nodes ({shown}); the layers added "
            f"profiled {self.int8_us:.0f} µs in int8, {self.float_us:.0f} µs in float"
        )
        if not self.inside:
            return text + "; outside the budget: dropped"
        assert self.speedup is not None
        low, mid, high = self.speedup
        text += f"; whole model ×{mid:.2f} ({low:.2f}–{high:.2f}) over the step before"
        return text + ("" if self.kept else f"; low end not above {1 + min_gain:g}×: dropped")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "nodes": self.nodes,
            "profiled_int8_us": round(self.int8_us, 1),
            "profiled_float_us": round(self.float_us, 1),
            "agreement": self.agreement,
            "max_abs": self.max_abs,
            "inside": self.inside,
            "speedup": list(self.speedup) if self.speedup else None,
            "kept": self.kept,
        }


@dataclass
class SpeedResult:
    """The model the step settled on, the nodes it kept float and what it measured."""

    path: Path
    nodes: list[str] = field(default_factory=list)
    times: list[NodeTime] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    tries: list[Try] = field(default_factory=list)
    check: SpeedCheck = field(default_factory=SpeedCheck)

    def idle_note(self) -> str:
        """Why nothing was tried (the table's note when there is no try)."""
        slow = slow_nodes(self.times, self.check.margin)
        total = self.totals.get("int8_us", 0.0)
        if not slow:
            return (
                f"kept float for speed: 0 nodes; every one of the {len(self.times)} quantized "
                f"layers profiled faster in int8 by more than {100 * self.check.margin:g} %"
            )
        return (
            f"kept float for speed: 0 nodes; {len(slow)} layers profiled no faster in int8, "
            f"no run of them saving ≥ {100 * self.check.min_share:g} % of the int8 model's "
            f"{total:.0f} µs"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept in the lineage)."""
        slow = {t.node for t in slow_nodes(self.times, self.check.margin)}
        return {
            "batch": self.check.batch,
            "threads": self.check.threads,
            "margin": self.check.margin,
            "min_gain": self.check.min_gain,
            "kept_float": self.nodes,
            "slow_in_int8": [t.node for t in self.times if t.node in slow],
            "profile": {k: round(v, 1) for k, v in self.totals.items()},
            "layers": [t.to_dict() for t in self.times],
            "tries": [t.to_dict() for t in self.tries],
        }


def _short(name: str) -> str:
    """The last two parts of a node name (Keras scopes make them long)."""
    return "/".join(name.split("/")[-2:])


def runs(times: list[NodeTime], slow: set[str]) -> list[list[NodeTime]]:
    """Maximal runs of consecutive slow layers, in graph order."""
    found: list[list[NodeTime]] = []
    current: list[NodeTime] = []
    for t in times:
        if t.node in slow:
            current.append(t)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def _tiled(rows: Feeds, batch: int) -> Feeds:
    count = len(next(iter(rows.values())))
    index = np.arange(batch) % count
    return {k: np.ascontiguousarray(v[index]) for k, v in rows.items()}


def whole_model_speedup(
    before: Path, after: Path, feeds: Feeds, check: SpeedCheck
) -> tuple[float, float, float]:
    """(low, median, high) of ``after``'s per-slice speed-ups over ``before``, timed in
    alternating paired slices on ``feeds``."""
    first, second = cpu_session(before, check.threads), cpu_session(after, check.threads)
    found = compare(
        {
            "before": lambda: first.run(None, feeds),
            "after": lambda: second.run(None, feeds),
        },
        base="before",
        seconds=check.seconds,
        margin=check.min_gain,
    )
    return found.speedup("after")


def keep_float_for_speed(
    float_model: Path,
    current: Path,
    rows: Feeds,
    folder: Path,
    *,
    build: Build,
    judge: Judge,
    check: SpeedCheck,
) -> SpeedResult:
    """Profile ``current`` (an int8 model quantized from ``float_model``) against the float
    model on ``rows`` (tiled to ``check.batch``), then try keeping its slow layers in float run
    by run (see the module's docstring). Returns the model kept and every try."""
    feeds = _tiled(rows, check.batch)
    times, totals = node_times(float_model, current, feeds, folder, threads=check.threads)
    result = SpeedResult(current, [], times, totals, [], check)
    slow = {t.node for t in slow_nodes(times, check.margin)}
    order = sorted(
        runs(times, slow), key=lambda r: sum(t.float_us - t.int8_us for t in r)
    )  # most time saved first
    floor = check.min_share * totals["int8_us"]
    worth = [r for r in order if sum(t.int8_us - t.float_us for t in r) >= floor]
    for run in worth[: check.max_tries]:
        nodes = result.nodes + [t.node for t in run]
        target = folder / f"speed.{len(nodes)}.onnx"
        build(nodes, target)
        agreement, max_abs, inside = judge(target)
        attempt = Try(
            nodes,
            sum(t.int8_us for t in run),
            sum(t.float_us for t in run),
            agreement,
            max_abs,
            inside,
        )
        if inside:
            attempt.speedup = whole_model_speedup(result.path, target, feeds, check)
            attempt.kept = attempt.speedup[0] > 1 + check.min_gain
        result.tries.append(attempt)
        if attempt.kept:
            result.path, result.nodes = target, nodes
    return result
