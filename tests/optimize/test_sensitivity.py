"""The sensitivity ranking and the output nodes on the committed Pima MLP (real rows, the
real quantizer and onnxruntime's qdq_loss_debug)."""

from __future__ import annotations

import numpy as np
import onnx

from portanet.optimize.int8 import quantize
from portanet.optimize.sensitivity import COMPUTE_OPS, output_nodes, sensitivity
from tests.helpers import COMMITTED_ONNX, SHARED, real_file


def test_output_nodes_follow_the_sigmoid_back_to_the_scores():
    graph = onnx.load(str(COMMITTED_ONNX)).graph
    found = output_nodes(COMMITTED_ONNX)
    ops = {n.name: n.op_type for n in graph.node}
    assert [ops[n] for n in found] == ["Sigmoid", "Add"]  # the sigmoid and its logits


def test_matrix_products_rank_first_and_every_quantized_node_is_ranked(tmp_path):
    table = np.genfromtxt(
        real_file(SHARED / "pima-indians-diabetes.csv"), delimiter=",", skip_header=1
    )
    graph = onnx.load(str(COMMITTED_ONNX)).graph
    rows = {graph.input[0].name: table[:64, :8].astype(np.float32)}
    qdq = tmp_path / "int8.onnx"
    quantize(
        COMMITTED_ONNX,
        qdq,
        method="MinMax",
        calibration=rows,
        cache=tmp_path / "ranges.json",
        reduce_range=False,
    )
    ranked = sensitivity(COMMITTED_ONNX, qdq, rows, tmp_path)
    ops = {n.name: n.op_type for n in graph.node}
    computes = [n for n in ranked if ops[n] in COMPUTE_OPS]
    assert len(computes) == 3 and ranked[:3] == computes
    assert len(set(ranked)) == len(ranked) and set(ranked) <= set(ops)
