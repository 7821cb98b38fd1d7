"""Bias correction of int8 QDQ models: shift each quantized layer's bias by the mean output
error its quantization adds, so that the int8 model's outputs are unbiased on average.

Two ways, both measured on the float model's statistics over the calibration rows:

- **analytic** (weight error only; Nagel et al., "Data-Free Quantization", §4.2, and NNCF's
  fast bias correction): the expected output error of a layer from its int8 weights alone is
  ``(W_q − W) · E[x]`` per output channel, ``E[x]`` the float model's mean input to the layer.
  For a convolution the mean input *map* (per channel and position, padding included) is
  convolved with ``W_q − W`` and averaged over the output positions. Every correction uses
  float statistics only, so no error is counted twice.
- **sequential** (empirical): layer by layer in graph order, the mean difference between the
  int8 model's output of the layer and the float model's, with every earlier layer already
  corrected (one quantization per corrected layer, the calibration ranges reused).

``W_q`` is read from the quantized model itself (the int8 initializer of the
``DequantizeLinear`` feeding each layer's weight, its scale and zero point), so the correction
follows exactly what onnxruntime's quantizer wrote, including its weight-scale adjustments for
int32 biases. The corrected *float* model is then quantized again from the same cached ranges:
the quantizer quantizes the corrected bias like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.optimize.activations import means, session

Feeds = dict[str, np.ndarray]
#: Operators whose constant weight is quantized and whose bias absorbs a correction.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
#: Rows run per call when collecting statistics.
STATISTICS_BATCH = 8


@dataclass
class Layer:
    """A node with a constant weight whose bias can absorb a correction."""

    node: str
    op: str
    input: str
    weight: str
    #: Bias initializer (a Conv's or Gemm's third input, or the constant of the ``Add`` after a
    #: MatMul); ``None`` for a Conv or Gemm without one (a zero bias is added).
    bias: str | None
    #: Node whose first output carries the bias (the layer's own, or the ``Add`` after a MatMul).
    biased_node: str
    #: Gemm's ``alpha`` and ``beta`` (1 for the others).
    alpha: float = 1.0
    beta: float = 1.0


@dataclass
class Correction:
    """The shift subtracted from one layer's bias."""

    node: str
    op: str
    shift: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "node": self.node,
            "op": self.op,
            "max_abs_shift": float(np.abs(self.shift).max()) if self.shift.size else 0.0,
        }


def _attribute(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def layers(model: Any) -> list[Layer]:
    """The layers of ``model`` (an ``onnx.ModelProto``) whose bias can be corrected, in graph
    order: named Conv, Gemm (``transA`` = 0) and MatMul nodes with a constant weight (a MatMul
    only when a single ``Add`` of a constant vector follows it)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or not node.name or len(node.input) < 2:
            continue
        if node.input[1] not in inits:
            continue
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias is not None and bias not in inits:
            continue
        layer = Layer(node.name, node.op_type, node.input[0], node.input[1], bias, node.name)
        if node.op_type == "Gemm":
            if _attribute(node, "transA", 0):
                continue
            layer.alpha = float(_attribute(node, "alpha", 1.0))
            layer.beta = float(_attribute(node, "beta", 1.0))
        elif node.op_type == "MatMul":
            after = consumers.get(node.output[0], [])
            if len(inits[node.input[1]].dims) != 2 or len(after) != 1 or after[0].op_type != "Add":
                continue
            add = after[0]
            constant = [i for i in add.input if i in inits and i != node.output[0]]
            width = inits[node.input[1]].dims[1]
            if len(constant) != 1 or int(np.prod(inits[constant[0]].dims)) != width:
                continue
            if not add.name:
                continue
            layer.bias, layer.biased_node = constant[0], add.name
        found.append(layer)
    return found


def dequantized_weights(qdq_model: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The weights the quantized model computes with, by node name: ``scale · (q − zero)`` of
    the int8 initializer its weight's ``DequantizeLinear`` reads (float32, as onnxruntime
    dequantizes). Nodes kept in float are absent."""
    from onnx import numpy_helper

    graph = qdq_model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    wanted = set(names)
    found = {}
    for node in graph.node:
        if node.name not in wanted or len(node.input) < 2:
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        zero = (
            numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32)
            if len(dq.input) > 2 and dq.input[2]
            else np.zeros_like(scale)
        )
        if scale.size > 1:
            shape = [1] * q.ndim
            shape[int(_attribute(dq, "axis", 1)) % q.ndim] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        found[node.name] = ((q - zero) * scale).astype(np.float32)
    return found


def _conv_error(node: Any, weight_error: np.ndarray, mean_map: np.ndarray) -> np.ndarray:
    """Mean per output channel of ``Conv(mean_map, weight_error)`` with ``node``'s
    attributes (strides, pads, groups): the expected output error of a convolution."""
    import onnx
    from onnx import helper

    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    conv.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [conv],
        "weight_error",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list((1, *mean_map.shape)))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight_error.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (out,) = session(model, 1).run(None, {"x": mean_map[None].astype(np.float32)})
    return np.asarray(out, dtype=np.float64).mean(axis=(0, *range(2, out.ndim)))


def analytic_shifts(
    float_model: Any,
    qdq_model: Any,
    rows: Feeds,
    *,
    batch: int = STATISTICS_BATCH,
    threads: int = 1,
) -> list[Correction]:
    """The expected output error of every quantized layer from its int8 weights alone,
    ``(W_q − W) · E[x]`` with ``E[x]`` the float model's mean input on ``rows``."""
    from onnx import numpy_helper

    found = layers(float_model)
    weights = dequantized_weights(qdq_model, [x.node for x in found])
    found = [x for x in found if x.node in weights]
    if not found:
        return []
    nodes = {n.name: n for n in float_model.graph.node}
    inits = {i.name: i for i in float_model.graph.initializer}
    kinds = {x.input: x.op for x in found}

    def keep(name: str, rank: int) -> tuple[int, ...]:
        # A convolution's input: per channel and position; a matrix product's: last axis.
        return tuple(range(1, rank)) if kinds[name] == "Conv" else (rank - 1,)

    mean_in = means(
        float_model,
        rows,
        sorted({x.input for x in found}),
        keep=keep,
        batch=batch,
        threads=threads,
    )
    corrections = []
    for layer in found:
        float_weight = numpy_helper.to_array(inits[layer.weight]).astype(np.float64)
        error = weights[layer.node].astype(np.float64) - float_weight
        mean = mean_in[layer.input]
        if layer.op == "Conv":
            shift = _conv_error(nodes[layer.node], error, mean)
        elif layer.op == "Gemm":
            matrix = error.T if _attribute(nodes[layer.node], "transB", 0) else error
            shift = layer.alpha * (mean @ matrix) / layer.beta
        else:
            shift = mean @ error
        corrections.append(Correction(layer.node, layer.op, np.asarray(shift, dtype=np.float64)))
    return corrections


def corrected(float_model: Any, corrections: list[Correction]) -> Any:
    """A copy of ``float_model`` whose layers' biases are lowered by their shifts (a Conv or
    Gemm without a bias gets one; a bias shared with another node is copied first)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    graph = model.graph
    by_node = {x.node: x for x in layers(model)}
    nodes = {n.name: n for n in graph.node}
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for fix in corrections:
        layer = by_node[fix.node]
        if layer.bias is None:
            name = f"{layer.node}.bias_correction"
            graph.initializer.append(numpy_helper.from_array(-fix.shift.astype(np.float32), name))
            node = nodes[layer.node]
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
            continue
        source = inits[layer.bias]
        value = numpy_helper.to_array(source).astype(np.float64)
        new = (value - fix.shift.reshape(value.shape)).astype(numpy_helper.to_array(source).dtype)
        if uses.get(layer.bias, 0) > 1:
            name = f"{layer.bias}.{layer.node}"
            graph.initializer.append(numpy_helper.from_array(new, name))
            owner = nodes[layer.biased_node]
            owner.input[list(owner.input).index(layer.bias)] = name
        else:
            source.CopyFrom(numpy_helper.from_array(new, layer.bias))
    return model


def sequential_shifts(
    float_model: Any,
    quantize: Callable[[Any], Any],
    rows: Feeds,
    *,
    batch: int = STATISTICS_BATCH,
    threads: int = 1,
    report: Callable[[str], None] | None = None,
) -> tuple[Any, list[Correction]]:
    """Layer by layer in graph order: quantize the model corrected so far
    (``quantize(float ModelProto) -> QDQ ModelProto``, from fixed calibration ranges), and
    shift the next quantized layer's bias by the mean difference between its int8 output and
    its float output on ``rows``. Returns the corrected float model and the shifts."""
    found = layers(float_model)
    qdq = quantize(float_model)
    quantized = set(dequantized_weights(qdq, [x.node for x in found]))
    found = [x for x in found if x.node in quantized]
    if not found:
        return float_model, []
    float_nodes = {n.name: n for n in float_model.graph.node}
    outputs = [float_nodes[x.biased_node].output[0] for x in found]
    kinds = {float_nodes[x.biased_node].output[0]: x.op for x in found}

    def keep(name: str, rank: int) -> tuple[int, ...]:
        return (1,) if kinds.get(name, "Conv") == "Conv" else (rank - 1,)

    want = means(float_model, rows, outputs, keep=keep, batch=batch, threads=threads)
    current, done = float_model, []
    for index, layer in enumerate(found):
        if index:
            qdq = quantize(current)
        qdq_nodes = {n.name: n for n in qdq.graph.node}
        tensor = qdq_nodes[layer.biased_node].output[0]
        kinds[tensor] = layer.op
        got = means(qdq, rows, [tensor], keep=keep, batch=batch, threads=threads)[tensor]
        shift = got - want[float_nodes[layer.biased_node].output[0]]
        fix = Correction(layer.node, layer.op, shift)
        done.append(fix)
        current = corrected(current, [fix])
        if report is not None:
            report(f"{index + 1}/{len(found)} {layer.node}: max |shift| {np.abs(shift).max():.4g}")
    return current, done


def corrections(
    pre: Path,
    qdq: Path,
    folder: Path,
    rows: Feeds,
    batch: int,
    quantize: Callable[[Path, Path], None],
) -> Iterator[tuple[str, Path, list[Correction]]]:
    """The analytic, then the sequential correction of ``qdq`` (quantized from the float
    ``pre`` by ``quantize(float file, target file)`` from fixed ranges): for each, its name,
    the corrected model quantized the same way, and its shifts."""
    import onnx

    float_model = onnx.load(str(pre))
    fixes = analytic_shifts(float_model, onnx.load(str(qdq)), rows, batch=batch, threads=0)
    if not fixes:
        return
    target = folder / f"{qdq.stem}.analytic.onnx"
    quantize(save(corrected(float_model, fixes), folder / "pre.analytic.onnx"), target)
    yield "analytic", target, fixes
    scratch_float, scratch = folder / "pre.sequential.onnx", folder / "sequential.step.onnx"

    def requantize(model: Any) -> Any:
        quantize(save(model, scratch_float), scratch)
        return onnx.load(str(scratch))

    fixed, fixes = sequential_shifts(float_model, requantize, rows, batch=batch, threads=0)
    target = folder / f"{qdq.stem}.sequential.onnx"
    quantize(save(fixed, scratch_float), target)
    yield "sequential", target, fixes


def shifted_sources(
    pre: Path, fixes: list[Correction], folder: Path
) -> Callable[[list[str]], Path]:
    """For a list of nodes kept in float: a copy of ``pre`` with the shifts of ``fixes`` of
    every other layer (a float layer keeps its own bias), written under ``folder``."""
    import onnx

    float_model = onnx.load(str(pre))
    folder.mkdir(exist_ok=True)

    def source(excluded: list[str]) -> Path:
        skip = set(excluded)
        kept = [f for f in fixes if f.node not in skip]
        return save(corrected(float_model, kept), folder / f"pre.{len(skip)}.onnx")

    return source


def save(model: Any, path: Path) -> Path:
    """Write ``model`` to ``path``."""
    import onnx

    onnx.save(model, str(path))
    return path
