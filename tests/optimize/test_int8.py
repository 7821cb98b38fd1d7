"""The accuracy-aware int8 search on the digits CNN (real quantizer, real sessions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

import portanet
from portanet.optimize import optimize_model
from portanet.optimize.int8 import cpu_has_vnni
from portanet.optimize.optimize import LINEAGE


def test_cpu_vnni_is_read_from_the_cpu_flags():
    text = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    assert cpu_has_vnni() == ("avx512_vnni" in flags or "avx_vnni" in flags)


def test_a_tight_budget_keeps_the_fewest_sensitive_nodes_in_float(digits, tmp_path):
    """A max abs just below what the best recipe reaches: the search keeps nodes in float until
    it is met, and the step with one node fewer in float was tried and failed."""
    loose = optimize_model(
        digits.onnx_path,
        digits.rows_path,
        output=tmp_path / "loose.onnx",
        max_abs=float("inf"),
        transforms="int8-static",
        transformed_only=True,
        seconds=0.1,
    )
    best = min(s["max_abs"] for s in loose.candidates[1].int8["steps"])
    assert loose.candidates[1].int8["float_nodes"] == []  # inside at once: nothing kept float
    tight = 0.9 * best
    result = optimize_model(
        digits.onnx_path,
        digits.rows_path,
        output=tmp_path / "tight.onnx",
        max_abs=tight,
        min_agreement=1.0,
        transforms="int8-static",
        transformed_only=True,
        seconds=0.2,
    )
    (candidate,) = [c for c in result.candidates if c.name == "int8-static"]
    info = candidate.int8
    steps = info["steps"]
    recipes = [
        s
        for s in steps
        if s["float_nodes"] == 0
        and "bias correction" not in s["recipe"]
        and "for speed" not in s["recipe"]
    ]
    assert [tuple(s["recipe"].split(", ")[:2]) for s in recipes] == [
        (method, granularity)
        for method in ("MinMax", "Entropy", "Percentile")
        for granularity in ("per-channel", "per-tensor")
    ]
    assert not any(s["inside"] for s in recipes)  # no recipe alone meets it
    kept = len(info["float_nodes"])
    assert kept >= 1 and candidate.within_budget and candidate.max_abs <= tight
    by_count = {
        s["float_nodes"]: s for s in steps if s["float_nodes"] and "for speed" not in s["recipe"]
    }
    assert by_count[kept]["inside"]
    assert kept - 1 == 0 or not by_count[kept - 1]["inside"]  # the fewest that meet it
    # The written file keeps exactly those nodes' weights in float: their weight input is a
    # float32 initializer, not a dequantized int8 one.
    graph = onnx.load(str(result.output)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for name in info["float_nodes"]:
        node = next(n for n in graph.node if n.name == name)
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            assert node.input[1] in floats, (name, node.input[1])
    # The softmax writing the output and the Gemm computing its scores stay float: no 8-bit
    # steps in the scores, so no label ties; nothing between them is quantized.
    outputs = {o.name for o in graph.output}
    (softmax,) = [n for n in graph.node if outputs & set(n.output)]
    (gemm,) = [n for n in graph.node if softmax.input[0] in n.output]
    assert softmax.op_type == "Softmax" and gemm.op_type in ("Gemm", "MatMul")
    assert info["output_float"] == [softmax.name, gemm.name]
    assert gemm.input[1] in floats
    lineage = json.loads(
        portanet.load(result.output).session.get_modelmeta().custom_metadata_map[LINEAGE]
    )
    assert lineage["int8"]["float_nodes"] == info["float_nodes"]
    assert lineage["cpu"]["vnni"] == cpu_has_vnni()
    assert lineage["int8"]["reduce_range"] is (cpu_has_vnni() is False)
    reason = lineage["int8"]["reduce_range_reason"]
    assert reason.startswith("7-bit" if cpu_has_vnni() is False else "8-bit") and "VNNI" in reason
    # The figure recorded is the written file's, measured again here.
    base, written = portanet.load(digits.onnx_path), portanet.load(result.output)
    from portanet.optimize.data import load_rows, split_three

    *_, held = split_three(load_rows(digits.rows_path, base), 128, seed=0)
    diff = np.abs(base.predict(held["pixels"]) - written.predict(held["pixels"])).max()
    assert float(diff) == lineage["proof"]["vs_float32"]["max_abs"]


def test_both_bias_corrections_are_steps_and_the_one_kept_is_in_the_lineage(digits, tmp_path):
    """After the six recipes the search tries the analytic and the sequential bias correction
    of the best one; a correction is kept only when it scores at least as well on the
    selection rows, and the written file's lineage names it."""
    result = optimize_model(
        digits.onnx_path,
        digits.rows_path,
        output=tmp_path / "int8.onnx",
        max_abs=float("inf"),
        min_agreement=0.99,
        transforms="int8-static",
        transformed_only=True,
        seconds=0.1,
    )
    info = result.candidates[1].int8
    steps = info["steps"]
    recipes, corrections = steps[:6], steps[6:8]
    assert [s["recipe"].rsplit(", ", 1)[-1] for s in corrections] == [
        "analytic bias correction",
        "sequential bias correction",
    ]

    def score(step: dict) -> tuple[float, float]:
        return (step["agreement"], -step["max_abs"])

    best = max(recipes, key=score)
    for step in corrections:
        assert step["recipe"].startswith(best["recipe"].rsplit(", ", 1)[0])
        assert step["note"].endswith("biases corrected") and int(step["note"].split()[0]) >= 3
    lineage = json.loads(
        portanet.load(result.output).session.get_modelmeta().custom_metadata_map[LINEAGE]
    )
    kept = info["bias_correction"]
    assert lineage["int8"]["bias_correction"] == kept
    if kept is None:
        assert all(score(s) < score(best) for s in corrections)
    else:
        chosen = corrections[0 if kept["method"] == "analytic" else 1]
        assert score(chosen) >= score(best) and info["recipe"].endswith(
            f"{kept['method']} bias correction"
        )
        assert len(kept["layers"]) >= 3 and all(x["max_abs_shift"] > 0 for x in kept["layers"])
