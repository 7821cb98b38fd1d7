"""Per-layer times from onnxruntime's profiler, mapped back to the float graph through
onnxruntime's fusions (real exported model, real quantizer, real profiler)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from portanet.optimize.int8 import quantize
from portanet.optimize.node_times import (
    UNATTRIBUTED,
    NodeTime,
    attribute,
    node_times,
    owners,
    profiled_runs,
    quantized_nodes,
    slow_nodes,
)
from portanet.optimize.sensitivity import output_nodes


@pytest.fixture(scope="module")
def built(mobile_int8):
    """The tiny MobileNet-like net pre-processed, and its int8 QDQ model (outputs float)."""
    m = mobile_int8
    return m.pre, m.int8, m.rows, m.folder


def _convs(path: Path) -> list[str]:
    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]


def test_every_quantized_layer_is_timed_in_the_float_and_the_int8_model(built):
    """onnxruntime runs the float convolutions as NCHWc ``Conv`` nodes named after their
    activation's output and the int8 ones as ``QLinearConv`` nodes named ``<conv>_token_<n>``:
    every one is found again under its float graph's name, in graph order, with both times."""
    pre, int8, rows, folder = built
    feeds = {k: v[:1] for k, v in rows.items()}
    times, totals = node_times(pre, int8, feeds, folder, runs=5, threads=1)
    assert [t.node for t in times] == _convs(pre)  # the 6 convolutions; the dense stays float
    assert all(t.op == "Conv" and t.float_us > 0 and t.int8_us > 0 for t in times)
    # Most of each model's time lands on a layer; what is left is onnxruntime's own reorders.
    assert totals["float_other_us"] < 0.25 * totals["float_us"]
    assert totals["int8_other_us"] < 0.25 * totals["int8_us"]
    assert sum(t.int8_us for t in times) <= totals["int8_us"]
    assert not list(folder.glob("profile.*"))  # the profiler's files are removed


def test_profiled_names_are_onnxruntimes_fused_names_and_all_map_to_a_layer(built):
    pre, int8, rows, folder = built
    feeds = {k: v[:2] for k, v in rows.items()}
    float_run, int8_run = profiled_runs([pre, int8], feeds, folder, runs=3, warmup=1, threads=1)
    convs = set(_convs(pre))
    # The names are not the file's: the fused int8 kernels carry a suffix onnxruntime adds.
    assert not convs & set(int8_run)
    assert any("_token_" in name for name in int8_run)
    keys = owners(onnx.load(str(pre)))
    per_layer = attribute(int8_run, keys)
    assert convs <= set(per_layer)
    assert sum(per_layer.values()) == pytest.approx(sum(int8_run.values()))
    assert per_layer.get(UNATTRIBUTED, 0.0) < 0.25 * sum(int8_run.values())
    assert convs <= set(attribute(float_run, keys))


def test_owners_follow_activations_back_and_the_input_forward(built):
    pre = built[0]
    model = onnx.load(str(pre))
    keys = owners(model)
    graph = model.graph
    ops = {n.name: n.op_type for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type == "Clip":  # ReLU6 after a convolution: its time is the convolution's
            assert keys[node.name] == producer[node.input[0]].name
            assert ops[keys[node.output[0]]] == "Conv"
    first = _convs(pre)[0]
    assert keys[graph.input[0].name] == first  # the input (and its transpose) feed the first
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    assert keys[softmax.name] == softmax.name  # not fused into a layer: its own


def test_a_layer_kept_float_is_not_a_quantized_node(built, tmp_path):
    pre, int8, rows, folder = built
    assert quantized_nodes(onnx.load(str(int8))) == _convs(pre)
    first = _convs(pre)[0]
    partly = tmp_path / "partly.onnx"
    quantize(
        pre,
        partly,
        method="MinMax",
        calibration=rows,
        cache=folder / "ranges.json",
        reduce_range=False,
        exclude=[*output_nodes(pre), first],
    )
    assert quantized_nodes(onnx.load(str(partly))) == _convs(pre)[1:]
    times, _ = node_times(pre, partly, {k: v[:1] for k, v in rows.items()}, tmp_path, runs=3)
    assert [t.node for t in times] == _convs(pre)[1:]


def test_slow_nodes_are_those_not_faster_by_the_margin_most_time_lost_first():
    times = [
        NodeTime("fast", "Conv", 100.0, 50.0),  # ×2: int8 pays
        NodeTime("edge", "Conv", 104.0, 100.0),  # ×1.04: not beyond a 5 % margin
        NodeTime("slow", "Conv", 50.0, 110.0),  # ×0.45: loses 60 µs
        NodeTime("slower", "Conv", 10.0, 90.0),  # loses 80 µs
        NodeTime("fused", "Conv", 0.0, 30.0),  # no float time of its own: never chosen
    ]
    assert [t.node for t in slow_nodes(times, 0.05)] == ["slower", "slow", "edge"]
    assert [t.node for t in slow_nodes(times, 0.0)] == ["slower", "slow"]
    assert times[2].speedup == pytest.approx(50 / 110)
    assert np.isinf(NodeTime("x", "Conv", 1.0, 0.0).speedup)


def test_the_longest_name_wins_and_short_names_match_only_themselves():
    keys = {"conv": "conv", "conv_1": "conv_1", "conv_1/Relu:0": "conv_1", "12": "gemm"}
    times = {
        "conv_1_token_3": 5.0,  # QLinearConv of conv_1, not of conv
        "conv_1/Relu:0_nchwc": 2.0,  # NCHWc conv named after its activation's output
        "conv_token_0": 1.0,
        "ReorderOutput_token_12": 7.0,  # onnxruntime's own: "12" must not claim it
        "12": 3.0,
    }
    assert attribute(times, keys) == {"conv_1": 7.0, "conv": 1.0, UNATTRIBUTED: 7.0, "gemm": 3.0}
