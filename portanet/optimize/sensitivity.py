"""Which quantized nodes hurt most: the signal-to-quantization-noise ratio (SQNR) each one's
output loses against the float model (onnxruntime's ``qdq_loss_debug``), and the nodes that
write the scores, which every int8 recipe keeps in float."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from portanet.optimize.activations import Reader

Feeds = dict[str, np.ndarray]
#: Operators with weights, ranked before the others (see :func:`sensitivity`).
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Rows whose activations are compared for the sensitivity ranking (bounds its memory).
SENSITIVITY_ROWS = 4


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
            activations[name] = debug.collect_activations(str(augmented), Reader(few, len(few)))  # type: ignore[arg-type]
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
