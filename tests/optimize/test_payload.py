"""The chart payload the gate stores for the report (numpy only)."""

from __future__ import annotations

import json

import numpy as np

from portanet.report.payload import chart_payload, error_histogram


def test_payload_samples_real_pairs_and_histograms_every_element():
    rng = np.random.default_rng(1)
    ref = rng.random((500, 3)).astype(np.float32)
    cand = ref + rng.normal(0, 1e-6, ref.shape).astype(np.float32)
    cand[:10] = ref[:10]  # exact matches are counted apart
    payload = chart_payload({"out": ref}, {"out": cand}, points=300)
    (output,) = payload["outputs"]
    assert output["name"] == "out" and output["elements"] == 1500
    assert len(output["reference"]) == len(output["candidate"]) == 300
    flat_ref, flat_cand = ref.ravel().astype(np.float64), cand.ravel().astype(np.float64)
    for r, c in zip(
        output["reference"], output["candidate"], strict=True
    ):  # each point is a real pair
        assert np.any((np.abs(flat_ref - r) < 1e-6) & (np.abs(flat_cand - c) < 1e-6))
    hist = output["histogram"]
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    assert hist["zeros"] == int(np.count_nonzero(diff == 0)) >= 30
    assert sum(hist["counts"]) + hist["zeros"] == 1500
    assert 10 ** hist["log10_edges"][0] <= diff[diff > 0].min()
    assert 10 ** hist["log10_edges"][-1] >= diff.max()
    assert len(json.dumps(payload)) < 20_000  # small enough for the metadata


def test_payload_keeps_the_layerwise_series_and_skips_unmatched_outputs():
    layerwise = {
        "rows": [
            {"layer": "dense", "class": "Dense", "max_abs": 1e-7, "passed": True},
            {"layer": "head", "class": "Dense", "max_abs": 0.2, "passed": False},
        ]
    }
    payload = chart_payload(
        {"a": np.zeros((4, 2)), "b": np.ones(3)}, {"a": np.zeros((4, 2))}, layerwise=layerwise
    )
    assert [o["name"] for o in payload["outputs"]] == ["a"]
    assert payload["layerwise"][1] == {
        "layer": "head",
        "class": "Dense",
        "max_abs": 0.2,
        "passed": False,
    }


def test_histogram_of_identical_outputs_and_of_nan():
    assert error_histogram(np.zeros(5)) == {
        "log10_edges": [],
        "counts": [],
        "zeros": 5,
        "non_finite": 0,
    }
    hist = error_histogram(np.array([np.nan, 1e-3, 1e-3]))
    assert hist["non_finite"] == 1 and sum(hist["counts"]) == 2
