"""portanet.report.charts: each chart from plain JSON data to an inline SVG element that needs
no font, script or network (text drawn as paths; matplotlib keeps each string as a comment,
which is what these tests read)."""

import re

import pytest

pytest.importorskip("matplotlib")

from portanet.report import charts  # noqa: E402


def _texts(svg: str) -> list[str]:
    return [t.strip() for t in re.findall(r"<!-- (.*?) -->", svg)]


def _self_contained(svg: str) -> None:
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    assert 'class="chart"' in svg and not re.search(r"<svg [^>]*\bwidth=", svg)
    assert "<metadata>" not in svg and "<text" not in svg and "font-family" not in svg
    assert "<script" not in svg and "<image" not in svg
    links = set(re.findall(r'(?:href|src)="([^"#][^"]*)"', svg))
    assert not links, links


def test_scatter_draws_the_pairs_and_the_diagonal():
    output = {"name": "probability", "reference": [0.1, 0.5, 0.9], "candidate": [0.1, 0.5, 0.9]}
    output["elements"] = 768
    svg = charts.to_svg(charts.scatter_figure(output))
    _self_contained(svg)
    texts = _texts(svg)
    assert "Keras vs ONNX: probability" in texts
    assert "3 sampled of 768" in texts and "y = x" in texts


@pytest.mark.parametrize(
    ("histogram", "note"),
    [
        ({"zeros": 5, "counts": [], "log10_edges": []}, "all 5 elements exactly equal"),
        ({"zeros": 2, "counts": [3, 1], "log10_edges": [-8, -7, -6]}, "2 elements exactly equal"),
        ({"zeros": 0, "counts": [4], "log10_edges": [-7, -6]}, "no element exactly equal"),
    ],
    ids=["all-equal", "some-equal", "none-equal"],
)
def test_the_histogram_says_how_many_elements_are_exactly_equal(histogram, note):
    svg = charts.to_svg(charts.histogram_figure({"name": "out", "histogram": histogram}))
    _self_contained(svg)
    assert note in _texts(svg)


def test_layerwise_names_the_layers_and_colours_the_failing_one_red():
    rows = [
        {"layer": "dense", "max_abs": 1e-7, "passed": True},
        {"layer": "probit", "max_abs": 0.2, "passed": False},
    ]
    svg = charts.to_svg(charts.layerwise_figure(rows))
    _self_contained(svg)
    assert {"dense", "probit"} <= set(_texts(svg))
    assert charts.RED.lower() in svg.lower() and charts.GREEN.lower() in svg.lower()


def test_learning_curves_draw_one_panel_per_metric_present():
    history = {"loss": [0.7, 0.5], "val_loss": [0.72, 0.6], "auc": [0.7, 0.8]}
    svg = charts.to_svg(charts.learning_figure(history))
    _self_contained(svg)
    texts = _texts(svg)
    assert "loss" in texts and "ROC AUC" in texts and "accuracy" not in texts


def test_candidates_show_only_measured_ones():
    candidates = [
        {"name": "slim", "speedup": 1.4, "within_budget": True},
        {"name": "fp16", "speedup": 0.9, "within_budget": False},
        {"name": "int8-static", "speedup": None},
    ]
    svg = charts.to_svg(charts.candidates_figure(candidates))
    _self_contained(svg)
    assert {"slim", "fp16"} <= set(_texts(svg)) and "int8-static" not in _texts(svg)


def test_bench_draws_onnx_and_keras_when_both_are_there():
    row = {"batch": 1, "p50_ms": 0.01, "p90_ms": 0.02, "p99_ms": 0.03, "rows_per_s": 1e5}
    big = {**row, "batch": 64, "rows_per_s": 3e6}
    only_onnx = charts.to_svg(charts.bench_figure({"onnx": [row, big]}))
    both = charts.to_svg(charts.bench_figure({"onnx": [row, big], "keras": [row, big]}))
    _self_contained(both)
    assert "Keras p50" in _texts(both) and "Keras p50" not in _texts(only_onnx)
    assert "ONNX (portanet) p50" in _texts(only_onnx)
