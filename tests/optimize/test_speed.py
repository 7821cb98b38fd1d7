"""The int8 search's latency-aware step on a tiny MobileNet-like net (real exported model,
real quantizer, real profiler and timing; no verdict depends on how fast this machine is)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import portanet
from portanet.optimize import optimize_model
from portanet.optimize.int8 import quantize
from portanet.optimize.node_times import NodeTime
from portanet.optimize.optimize import LINEAGE
from portanet.optimize.speed import SpeedCheck, keep_float_for_speed, runs


@pytest.fixture(scope="module")
def built(mobile, mobile_int8):
    pre, int8, rows, folder = (
        mobile_int8.pre,
        mobile_int8.int8,
        mobile_int8.rows,
        mobile_int8.folder,
    )
    keep, options = mobile_int8.keep, mobile_int8.options
    selection = {name: mobile.rows[64:128] for name in rows}

    def build(nodes, target):
        quantize(pre, target, reduce_range=False, exclude=keep + nodes, **options)

    def outputs(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, selection)[0]

    reference = outputs(pre)

    def judge_within(max_abs):
        def judge(path):
            got = outputs(path)
            error = float(np.abs(got - reference).max())
            agreement = float(np.mean(got.argmax(1) == reference.argmax(1)))
            return agreement, error, error <= max_abs

        return judge

    return pre, int8, rows, folder, build, judge_within


def test_runs_are_consecutive_slow_layers_in_graph_order():
    times = [NodeTime(n, "Conv", 1.0, 1.0) for n in "abcdef"]
    assert [[t.node for t in r] for r in runs(times, {"a", "b", "d", "f"})] == [
        ["a", "b"],
        ["d"],
        ["f"],
    ]
    assert runs(times, set()) == []


def test_a_try_outside_the_budget_is_dropped_without_timing(built, tmp_path):
    """A margin of 100 makes every layer slow (one run of all six); a budget no model meets
    (even the one with every layer float has max abs ≥ 0): the try is built, judged, dropped,
    never timed; the model is unchanged."""
    pre, int8, rows, _, build, judge_within = built
    check = SpeedCheck(batch=1, threads=1, seconds=0.2, margin=100.0, min_share=-math.inf)
    found = keep_float_for_speed(
        pre, int8, rows, tmp_path, build=build, judge=judge_within(-1.0), check=check
    )
    (attempt,) = found.tries
    assert len(attempt.nodes) == 6 and not attempt.inside and attempt.speedup is None
    assert not attempt.kept and found.path == int8 and found.nodes == []
    assert attempt.note(check.min_gain).endswith("outside the budget: dropped")
    assert (tmp_path / "speed.6.onnx").exists()


def test_a_try_inside_the_budget_is_timed_and_kept_only_beyond_the_margin(built, tmp_path):
    """Inside the budget, the try is timed against the model before it in alternating slices;
    no model is 101× faster than another, so asked for a gain of 100 it is dropped with its
    measured spread."""
    pre, int8, rows, _, build, judge_within = built
    check = SpeedCheck(
        batch=1, threads=1, seconds=0.3, margin=100.0, min_share=-math.inf, min_gain=100.0
    )
    found = keep_float_for_speed(
        pre, int8, rows, tmp_path, build=build, judge=judge_within(math.inf), check=check
    )
    (attempt,) = found.tries
    assert attempt.inside and attempt.speedup is not None
    low, mid, high = attempt.speedup
    assert 0 < low <= mid <= high
    assert not attempt.kept and found.path == int8 and found.nodes == []
    assert attempt.note(check.min_gain).endswith("low end not above 101×: dropped")
    recorded = found.to_dict()
    assert recorded["kept_float"] == [] and recorded["tries"][0]["speedup"] == [low, mid, high]
    assert len(recorded["slow_in_int8"]) == 6 and len(recorded["layers"]) == 6


def test_nothing_is_tried_when_every_layer_is_faster_in_int8(built, tmp_path):
    """A margin of −100 % finds no layer slow: no try, and the note says why."""
    pre, int8, rows, _, build, judge_within = built
    check = SpeedCheck(batch=1, threads=1, seconds=0.2, margin=-1.0)
    found = keep_float_for_speed(
        pre, int8, rows, tmp_path, build=build, judge=judge_within(math.inf), check=check
    )
    assert found.tries == [] and found.path == int8
    assert found.idle_note().startswith("kept float for speed: 0 nodes; every one of the 6")


def test_the_optimizer_records_the_step_and_keeps_only_what_cleared_the_margin(mobile, tmp_path):
    """End to end at batch 1 on one thread: the step is in the int8 table and the lineage; a
    try kept was inside the budget and faster than the model before it beyond the measured
    spread, and its layers are float in the written file; a try dropped was not."""
    result = optimize_model(
        mobile.onnx_path,
        mobile.rows_path,
        output=tmp_path / "int8.onnx",
        max_abs=float("inf"),
        min_agreement=0.9,
        transforms="int8-static",
        transformed_only=True,
        seconds=0.5,
        threads=1,
    )
    info = result.candidates[1].int8
    speed = info["speed"]
    assert speed["batch"] == 1 and speed["threads"] == 1 and speed["margin"] == 0.05
    assert speed["min_gain"] == 0.0
    assert len(speed["layers"]) == 6 and all(x["float_us"] > 0 for x in speed["layers"])
    steps = [s for s in info["steps"] if s["recipe"].endswith("kept float for speed")]
    assert steps and all(s["note"].startswith("kept float for speed: ") for s in steps)
    tries = speed["tries"]
    assert len(steps) == max(1, len(tries))
    kept: list[str] = []
    for attempt in tries:
        beyond = attempt["inside"] and attempt["speedup"][0] > 1 + speed["min_gain"]
        assert attempt["kept"] == beyond
        assert attempt["nodes"][: len(kept)] == kept  # each try adds a run to what was kept
        if attempt["kept"]:
            kept = attempt["nodes"]
    assert info["speed_float_nodes"] == speed["kept_float"] == kept
    graph = onnx.load(str(result.output)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    weights = {n.name: n.input[1] for n in graph.node if n.op_type == "Conv"}
    float_convs = {n for n, w in weights.items() if w in floats}
    assert float_convs == (set(kept) | set(info["float_nodes"])) & set(weights)
    lineage = json.loads(
        portanet.load(result.output).session.get_modelmeta().custom_metadata_map[LINEAGE]
    )
    assert lineage["int8"]["speed_float_nodes"] == kept
    assert lineage["int8"]["speed"]["tries"] == tries
