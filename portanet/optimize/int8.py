"""Accuracy-aware int8: search the static quantization recipe, then the fewest nodes to keep
in float, until the selection rows (which the final verdict never sees) are inside the budget.

1. Calibrate once per method (min-max, entropy, percentile) with onnxruntime's calibrators,
   a few rows at a time (``CalibStridedMinMax``: memory stays bounded by one stride of
   activations, not by all the calibration rows), the ranges cached in a file.
2. Build one QDQ model per recipe from the cached ranges: symmetric int8 weights per channel
   and per tensor, uint8 activations, 7-bit weights (``reduce_range``) on CPUs without VNNI,
   where 8-bit dot products saturate. The recipe with the best label agreement (then the
   smallest error) on the selection rows is kept.
3. Correct its biases, analytically and sequentially (:mod:`portanet.optimize.bias_correction`);
   the better of the two is kept when it does at least as well on the selection rows.
4. If it is still outside the budget, rank the quantized nodes by their measured sensitivity
   (:mod:`portanet.optimize.sensitivity`) and keep the 1, 2, 4, … most sensitive in float,
   then bisect down to the fewest that meet the budget.
5. Once inside the budget, keep in float the layers whose int8 kernel onnxruntime's profiler
   finds no faster than their float one, when the whole model gets measurably faster and stays
   inside the budget (:mod:`portanet.optimize.speed`).

Every build is a :class:`Step` in the table ``optimize`` prints: what was tried, how many nodes
stayed float, and what it bought.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.optimize.activations import Reader
from portanet.optimize.sensitivity import output_nodes, sensitivity
from portanet.optimize.speed import SpeedCheck, keep_float_for_speed

Feeds = dict[str, np.ndarray]
#: Calibration methods tried, in order (onnxruntime's ``CalibrationMethod`` names).
METHODS = ("MinMax", "Entropy", "Percentile")
#: Weight scales tried: one per output channel, then one per tensor (fewer scales: on a tiny
#: CNN the per-tensor model kept more labels of the unseen digits than the per-channel one).
GRANULARITIES = (True, False)
#: Rows run through the calibration model per call, and per strided collection.
CALIBRATION_BATCH = 8
STRIDE_ROWS = 8


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI (``avx512_vnni`` or ``avx_vnni``); ``None`` when it cannot
    be told (no /proc/cpuinfo, or not x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    words = set(flags.split(":", 1)[-1].split())
    return bool({"avx512_vnni", "avx_vnni"} & words)


def reduce_range_reason(vnni: bool | None) -> str:
    """Why weights were (or were not) quantized to 7 bits on this CPU (kept in the lineage)."""
    if vnni is False:
        return (
            "7-bit weights: this CPU has no VNNI, where 8-bit dot products (vpmaddubsw) "
            "saturate their 16-bit sums"
        )
    if vnni is True:
        return "8-bit weights: this CPU has VNNI (vpdpbusd sums in 32 bits, no saturation)"
    return "8-bit weights: VNNI could not be told (not x86 Linux); no saturation is assumed"


@dataclass
class Step:
    """One quantized model the search built and measured."""

    recipe: str
    float_nodes: int
    agreement: float | None
    max_abs: float
    inside: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "recipe": self.recipe,
            "float_nodes": self.float_nodes,
            "agreement": self.agreement,
            "max_abs": self.max_abs,
            "inside": self.inside,
            "note": self.note,
        }


@dataclass
class SearchResult:
    """The model the search settled on and every step that led there."""

    path: Path
    recipe: str
    reduce_range: bool
    vnni: bool | None
    float_nodes: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    #: Nodes writing the graph's outputs, always kept in float (see :func:`output_nodes`).
    output_float: list[str] = field(default_factory=list)
    #: The analytic bias correction kept (layers and largest shift), ``None`` when not kept.
    bias_correction: dict[str, Any] | None = None
    #: Nodes kept in float because their int8 kernel was slower (after ``float_nodes``).
    speed_float_nodes: list[str] = field(default_factory=list)
    #: What the latency-aware step profiled and tried, ``None`` when it did not run.
    speed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept in the lineage)."""
        return {
            "recipe": self.recipe,
            "reduce_range": self.reduce_range,
            "reduce_range_reason": reduce_range_reason(self.vnni),
            "cpu_vnni": self.vnni,
            "float_nodes": self.float_nodes,
            "output_float": self.output_float,
            "bias_correction": self.bias_correction,
            "speed_float_nodes": self.speed_float_nodes,
            "speed": self.speed,
            "steps": [s.to_dict() for s in self.steps],
        }


#: Judges a built model: (label agreement or None, max abs error, inside the budget).
Judge = Callable[[Path], tuple[float | None, float, bool]]


def _usable_rows(calibration: Feeds, fixed_batch: int | None) -> tuple[Feeds, int, int]:
    """Calibration rows trimmed to whole batches (and whole strides) for the graph."""
    batch = fixed_batch or CALIBRATION_BATCH
    rows = len(next(iter(calibration.values())))
    stride = max(batch, (STRIDE_ROWS // batch) * batch)
    usable = (rows // stride) * stride or (rows // batch) * batch
    if usable == 0:
        raise InputError(
            f"calibration: expected at least {batch} rows for batches of {batch}, got {rows}"
        )
    stride = min(stride, usable)
    return {k: v[:usable] for k, v in calibration.items()}, batch, stride


def quantize(
    pre: Path,
    target: Path,
    *,
    method: str,
    calibration: Feeds,
    cache: Path,
    reduce_range: bool,
    exclude: list[str] | tuple[str, ...] = (),
    fixed_batch: int | None = None,
    per_channel: bool = True,
) -> None:
    """One static QDQ quantization of the pre-processed ``pre`` (symmetric int8 weights, one
    scale per output channel or per tensor); ranges calibrated with ``method`` on first use
    and cached in ``cache`` for every later recipe."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from portanet.optimize.quiet import quiet

    rows, batch, stride = _usable_rows(calibration, fixed_batch)
    with quiet():
        quantize_static(
            str(pre),
            str(target),
            Reader(rows, batch),  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=list(exclude),
            calibration_cache_path=str(cache),
            extra_options={"WeightSymmetric": True, "CalibStridedMinMax": stride},
        )


def search(
    pre: Path,
    folder: Path,
    *,
    calibration: Feeds,
    judge: Judge,
    vnni: bool | None,
    fixed_batch: int | None = None,
    methods: tuple[str, ...] = METHODS,
    speed: SpeedCheck | None = None,
) -> SearchResult:
    """The recipe and the fewest float nodes that ``judge`` accepts (or the best found); with
    ``speed``, then the layers kept float because their int8 kernel is slower
    (:func:`~portanet.optimize.speed.keep_float_for_speed`)."""
    reduce_range = vnni is False
    bits = "7" if reduce_range else "8"
    keep = output_nodes(pre)
    steps: list[Step] = []
    best: tuple[tuple[float, float], str, bool, Path, int] | None = None
    for method in methods:
        for per_channel in GRANULARITIES:
            name = f"{method}, {'per-channel' if per_channel else 'per-tensor'}"
            target = folder / f"int8.{method}.{'channel' if per_channel else 'tensor'}.onnx"
            recipe = f"{name}, {bits}-bit weights"
            try:
                quantize(
                    pre,
                    target,
                    method=method,
                    calibration=calibration,
                    cache=folder / f"ranges.{method}.json",
                    reduce_range=reduce_range,
                    fixed_batch=fixed_batch,
                    per_channel=per_channel,
                    exclude=keep,
                )
            except Exception as exc:  # a calibrator that cannot handle this graph
                steps.append(Step(recipe, 0, None, math.inf, False, f"failed: {exc}"))
                continue
            agreement, max_abs, inside = judge(target)
            steps.append(Step(recipe, 0, agreement, max_abs, inside))
            score = (agreement if agreement is not None else 0.0, -max_abs)
            if best is None or score > best[0]:
                best = (score, method, per_channel, target, len(steps) - 1)
    if best is None:
        raise InputError("int8: no calibration method could quantize this graph")
    score, method, per_channel, path, index = best
    label = f"{method}, {'per-channel' if per_channel else 'per-tensor'}"
    result = SearchResult(path, label, reduce_range, vnni, [], steps, keep)
    cache = folder / f"ranges.{method}.json"
    options = dict(
        method=method,
        calibration=calibration,
        cache=cache,
        reduce_range=reduce_range,
        fixed_batch=fixed_batch,
        per_channel=per_channel,
    )
    source, inside = _bias_corrections(
        pre, folder, result, (score, steps[index].inside), judge, options
    )
    if inside:
        return _for_speed(pre, folder, result, calibration, source, judge, options, speed)
    ranked = [n for n in sensitivity(pre, result.path, calibration, folder) if n not in keep]
    tried: dict[int, tuple[Path, bool]] = {}

    def attempt(count: int) -> bool:
        target = folder / f"int8.{method}.{int(per_channel)}.float{count}.onnx"
        quantize(
            source(keep + ranked[:count]),
            target,
            method=method,
            calibration=calibration,
            cache=cache,
            reduce_range=reduce_range,
            exclude=keep + ranked[:count],
            fixed_batch=fixed_batch,
            per_channel=per_channel,
        )
        agreement, max_abs, inside = judge(target)
        steps.append(
            Step(f"{result.recipe}, most sensitive in float", count, agreement, max_abs, inside)
        )
        tried[count] = (target, inside)
        return inside

    low, high, count = 0, None, 1
    while count <= len(ranked):
        if attempt(count):
            high = count
            break
        low, count = count, count * 2
    if high is None and len(ranked) and len(ranked) not in tried and attempt(len(ranked)):
        high = len(ranked)
    if high is None:
        return result
    while high - low > 1:
        middle = (low + high) // 2
        if attempt(middle):
            high = middle
        else:
            low = middle
    result.path, result.float_nodes = tried[high][0], ranked[:high]
    return _for_speed(pre, folder, result, calibration, source, judge, options, speed)


def _for_speed(
    pre: Path,
    folder: Path,
    result: SearchResult,
    calibration: Feeds,
    source: Callable[[list[str]], Path],
    judge: Judge,
    options: dict[str, Any],
    speed: SpeedCheck | None,
) -> SearchResult:
    """The latency-aware step on the model the search settled on (inside the budget): each
    try a :class:`Step`, the nodes kept and the profile in ``result``."""
    if speed is None:
        return result
    before = result.output_float + result.float_nodes

    def build(nodes: list[str], target: Path) -> None:
        quantize(source(before + nodes), target, exclude=before + nodes, **options)

    recipe = f"{result.recipe}, kept float for speed"
    try:
        found = keep_float_for_speed(
            pre, result.path, calibration, folder, build=build, judge=judge, check=speed
        )
    except Exception as exc:  # a graph the profiler or quantizer cannot handle: model kept
        agreement, max_abs, inside = judge(result.path)
        note = f"kept float for speed: not run ({type(exc).__name__}: {' '.join(str(exc).split())})"
        result.steps.append(Step(recipe, len(result.float_nodes), agreement, max_abs, inside, note))
        return result
    if not found.tries:  # nothing worth trying: the model as it was, and why
        agreement, max_abs, inside = judge(found.path)
        result.steps.append(
            Step(recipe, len(result.float_nodes), agreement, max_abs, inside, found.idle_note())
        )
    for attempt in found.tries:
        result.steps.append(
            Step(
                recipe,
                len(result.float_nodes) + len(attempt.nodes),
                attempt.agreement,
                attempt.max_abs,
                attempt.inside,
                attempt.note(speed.min_gain),
            )
        )
    result.path, result.speed_float_nodes, result.speed = found.path, found.nodes, found.to_dict()
    return result


def _bias_corrections(
    pre: Path,
    folder: Path,
    result: SearchResult,
    best: tuple[tuple[float, float], bool],
    judge: Judge,
    options: dict[str, Any],
) -> tuple[Callable[[list[str]], Path], bool]:
    """Both bias corrections (:mod:`portanet.optimize.bias_correction`) of the best recipe,
    each a step; the one scoring best on the selection rows is kept if it scores at least as
    well as the uncorrected model. Returns what later builds quantize for a list of float
    nodes (the pre-processed model, or a copy with the kept shifts of the layers still
    quantized) and whether the model kept is inside the budget."""
    from portanet.optimize import bias_correction as bc

    rows, batch, _ = _usable_rows(options["calibration"], options["fixed_batch"])
    if not options["fixed_batch"]:  # a few rows per call: every layer's input is kept
        batch = bc.STATISTICS_BATCH

    def quantize_from(source: Path, target: Path) -> None:
        quantize(source, target, exclude=result.output_float, **options)

    def unchanged(excluded: list[str]) -> Path:
        return pre

    source: Callable[[list[str]], Path] = unchanged
    score, inside = best
    for way, target, fixes in bc.corrections(pre, result.path, folder, rows, batch, quantize_from):
        agreement, max_abs, ok = judge(target)
        note = f"{len(fixes)} biases corrected"
        step = Step(f"{result.recipe}, {way} bias correction", 0, agreement, max_abs, ok, note)
        result.steps.append(step)
        if (agreement if agreement is not None else 0.0, -max_abs) >= score:
            score, inside = (agreement or 0.0, -max_abs), ok
            result.path = target
            result.bias_correction = {"method": way, "layers": [f.to_dict() for f in fixes]}
            source = bc.shifted_sources(pre, fixes, folder / way)
    if result.bias_correction:
        result.recipe += f", {result.bias_correction['method']} bias correction"
    return source, inside
