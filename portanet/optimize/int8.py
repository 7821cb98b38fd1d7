"""Accuracy-aware int8: search the static quantization recipe, then the fewest nodes to keep
in float, until the selection rows (which the final verdict never sees) are inside the budget.

1. Calibrate once per method (min-max, entropy, percentile) with onnxruntime's calibrators,
   a few rows at a time (``CalibStridedMinMax``: memory stays bounded by one stride of
   activations, not by all the calibration rows), the ranges cached in a file.
2. Build one QDQ model per recipe from the cached ranges: symmetric int8 weights per channel
   and per tensor, uint8 activations, 7-bit weights (``reduce_range``) on CPUs without VNNI,
   where 8-bit dot products saturate. The recipe with the best label agreement (then the
   smallest error) on the selection rows is kept.
3. If it is still outside the budget, rank the quantized nodes by their measured sensitivity —
   the signal-to-quantization-noise ratio (SQNR) of their output, from onnxruntime's
   ``qdq_loss_debug`` — and keep the 1, 2, 4, … most sensitive in float, then bisect down to
   the fewest that meet the budget.

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

Feeds = dict[str, np.ndarray]
#: Calibration methods tried, in order (onnxruntime's ``CalibrationMethod`` names).
METHODS = ("MinMax", "Entropy", "Percentile")
#: Weight scales tried: one per output channel, then one per tensor (fewer scales: on a tiny
#: CNN the per-tensor model kept more labels of the unseen digits than the per-channel one).
GRANULARITIES = (True, False)
#: Rows run through the calibration model per call, and per strided collection.
CALIBRATION_BATCH = 8
STRIDE_ROWS = 8
#: Operators with weights, ranked before the others (see :func:`sensitivity`).
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Rows whose activations are compared for the sensitivity ranking (bounds its memory).
SENSITIVITY_ROWS = 4


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
            "steps": [s.to_dict() for s in self.steps],
        }


#: Judges a built model: (label agreement or None, max abs error, inside the budget).
Judge = Callable[[Path], tuple[float | None, float, bool]]


class _Reader:
    """A calibration reader over ``rows`` in batches, restartable on a row range (what
    ``CalibStridedMinMax`` asks of it)."""

    def __init__(self, rows: Feeds, batch: int) -> None:
        self._rows, self._batch = rows, batch
        self._count = len(next(iter(rows.values())))
        self.set_range(0, self._count)

    def __len__(self) -> int:
        return self._count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, self._count)

    def get_next(self) -> Feeds | None:
        if self._next >= self._end:
            return None
        stop = min(self._next + self._batch, self._end)
        batch = {k: v[self._next : stop] for k, v in self._rows.items()}
        self._next = stop
        return batch

    def __iter__(self) -> Any:
        self.set_range(0, self._count)
        return iter(self.get_next, None)


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
            _Reader(rows, batch),  # type: ignore[arg-type]
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


def sensitivity(float_model: Path, qdq_model: Path, rows: Feeds, folder: Path) -> list[str]:
    """Quantized nodes of ``float_model``, most sensitive first: ranked by the SQNR (dB) of
    their output in ``qdq_model`` against the float model's, on a few rows."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    from portanet.optimize.quiet import quiet

    few = {k: v[:SENSITIVITY_ROWS] for k, v in rows.items()}
    activations = {}
    for name, path in (("float", float_model), ("qdq", qdq_model)):
        augmented = folder / f"{name}.debug.onnx"
        with quiet():
            debug.modify_model_output_intermediate_tensors(str(path), str(augmented))
            activations[name] = debug.collect_activations(str(augmented), _Reader(few, len(few)))  # type: ignore[arg-type]
        augmented.unlink()
    matched = debug.create_activation_matching(activations["qdq"], activations["float"])
    errors = debug.compute_activation_error(matched)
    del activations, matched
    graph = onnx.load(str(float_model), load_external_data=False).graph
    scored = []
    for node in graph.node:
        if not node.name:
            continue
        sqnr = [errors[o]["xmodel_err"] for o in node.output if "xmodel_err" in errors.get(o, {})]
        if sqnr:
            scored.append((min(sqnr), node.name))
    # Accumulated error hides which node added it: rank by each node's drop in SQNR from its
    # worst input (its own contribution), falling back to its output SQNR.
    produced = {o: n for n in graph.node for o in n.output}
    ops = {n.name: n.op_type for n in graph.node}
    contribution = []
    for out_sqnr, name in scored:
        node = next(n for n in graph.node if n.name == name)
        inputs = [
            errors[i]["xmodel_err"]
            for i in node.input
            if i in produced and "xmodel_err" in errors.get(i, {})
        ]
        before = min(inputs) if inputs else math.inf
        contribution.append((min(before, 200.0) - out_sqnr, -out_sqnr, name))
    contribution.sort(reverse=True)
    # Compute nodes (convolutions, matrix products) first: keeping an activation or a reshape
    # in float only moves the quantize/dequantize pairs around it (measured on the Teachable
    # Machine MobileNet: its Relu6 nodes ranked first needed 75 float nodes for 99 %, its
    # projection convolutions 7).
    weighted = [c for c in contribution if ops.get(c[2]) in COMPUTE_OPS]
    rest = [c for c in contribution if ops.get(c[2]) not in COMPUTE_OPS]
    ranked = [name for _, _, name in weighted + rest]
    # Nodes the quantizer may touch whose outputs were not compared (a graph output, a shape
    # op) come last, in graph order, so keeping every node in float is reachable.
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    quantizable = set(QDQRegistry) | set(QLinearOpsRegistry)
    seen = set(ranked)
    return ranked + [
        n.name for n in graph.node if n.name and n.op_type in quantizable and n.name not in seen
    ]


#: Operators that only rescale or reshape the scores before the output: the node feeding
#: them is kept float too.
PASS_THROUGH = ("Softmax", "LogSoftmax", "Sigmoid", "Identity", "Reshape", "Flatten", "Squeeze")


def output_nodes(model: Path) -> list[str]:
    """Named nodes that write a graph output, and back through :data:`PASS_THROUGH` operators
    the node that computes the scores: kept in float by every recipe. 8-bit scores have 1/255
    steps, so two close class scores become equal and the label flips on a tie (measured: a
    digit scored 0.49 / 0.42 in float read 0.451 / 0.451 with its logits in int8)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    found: list[str] = []
    todo = [producer[o.name] for o in graph.output if o.name in producer]
    while todo:
        node = todo.pop()
        if not node.name or node.name in found:
            continue
        found.append(node.name)
        if node.op_type in PASS_THROUGH:
            todo += [producer[i] for i in node.input[:1] if i in producer]
    return found


def search(
    pre: Path,
    folder: Path,
    *,
    calibration: Feeds,
    judge: Judge,
    vnni: bool | None,
    fixed_batch: int | None = None,
    methods: tuple[str, ...] = METHODS,
) -> SearchResult:
    """The recipe and the fewest float nodes that ``judge`` accepts (or the best found)."""
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
        return result
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
