"""portanet.report.payload: the chart data export records for the report (numpy only): real
(reference, candidate) pairs, a histogram of every element's error, the layerwise series."""

from __future__ import annotations

import json

import numpy as np

from portanet.report.payload import MAX_LAYERS, MAX_OUTPUTS, chart_payload, error_histogram


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


def test_histogram_bins_span_whole_decades_of_the_errors():
    hist = error_histogram(np.array([1e-3, 1e-3, 0.1, 0.0, np.inf]), bins=2)
    assert hist["log10_edges"] == [-3.0, -2.0, -1.0]
    assert hist["counts"] == [2, 1] and hist["zeros"] == 1 and hist["non_finite"] == 1
    one = error_histogram(np.array([0.01, 0.01]), bins=4)
    assert one["log10_edges"][0] == -2.0 and one["log10_edges"][-1] == -1.0
    assert sum(one["counts"]) == 2


def test_small_outputs_are_kept_whole_and_samples_are_seeded():
    ref = np.arange(30, dtype=np.float32).reshape(10, 3)
    small = chart_payload({"y": ref}, {"y": ref + 1}, points=400)["outputs"][0]
    assert small["reference"] == ref.ravel().tolist()
    assert small["candidate"] == (ref + 1).ravel().tolist()
    big = np.random.default_rng(0).random(5000)
    first = chart_payload({"y": big}, {"y": big}, seed=1)["outputs"][0]["reference"]
    again = chart_payload({"y": big}, {"y": big}, seed=1)["outputs"][0]["reference"]
    other = chart_payload({"y": big}, {"y": big}, seed=2)["outputs"][0]["reference"]
    assert first == again and first != other
    positions = [int(np.argmin(np.abs(big - v))) for v in first]
    assert positions == sorted(positions)  # in the output's own order


def test_outputs_and_layers_are_capped_and_mismatched_shapes_skipped():
    many = {f"o{i}": np.full(4, float(i)) for i in range(MAX_OUTPUTS + 3)}
    payload = chart_payload(many, many, points=60)
    assert [o["name"] for o in payload["outputs"]] == [f"o{i}" for i in range(MAX_OUTPUTS)]
    assert chart_payload({"a": np.zeros(4)}, {"a": np.zeros(5)})["outputs"] == []

    class Report:  # what the layerwise comparison hands over: an object with to_dict()
        def to_dict(self):
            rows = [{"layer": f"l{i}", "max_abs": i * 1e-7} for i in range(MAX_LAYERS + 50)]
            return {"rows": rows}

    series = chart_payload({}, {}, layerwise=Report())["layerwise"]
    assert len(series) == MAX_LAYERS and series[-1]["layer"] == f"l{MAX_LAYERS - 1}"
    assert series[3] == {"layer": "l3", "class": "", "max_abs": 3e-7, "passed": True}
