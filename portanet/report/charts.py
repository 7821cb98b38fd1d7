"""The report's charts, drawn with matplotlib and embedded as inline SVG.

Text is drawn as paths (no font files, no network), colours follow one small palette, and every
function takes plain JSON data (what the metadata or a bench file holds) and returns a figure.
"""

from __future__ import annotations

import io
import re
from typing import Any

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
BLUE = "#2f6fde"
ORANGE = "#e8833a"
GREEN = "#2f9e5b"
RED = "#d64545"
PURPLE = "#7c5cc4"
SERIES = (BLUE, ORANGE, GREEN, PURPLE, RED, MUTED)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "path",
            "svg.hashsalt": "portanet",
            "font.size": 9,
            "axes.edgecolor": GRID,
            "axes.labelcolor": INK,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.titlecolor": INK,
            "axes.grid": True,
            "grid.color": GRID,
            "grid.linewidth": 0.8,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "figure.dpi": 100,
        }
    )
    return plt


def to_svg(figure: Any) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), then closed."""
    plt = _pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(
        r'<svg ([^>]*?)width="[^"]*" height="[^"]*"',
        r'<svg \1class="chart" preserveAspectRatio="xMidYMid meet"',
        text,
        count=1,
    )


def scatter_figure(
    output: dict[str, Any], *, reference: str = "Keras", candidate: str = "ONNX"
) -> Any:
    """Reference against candidate for sampled elements of one output, with y = x."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.2, 3.6))
    xs, ys = output.get("reference", []), output.get("candidate", [])
    if xs:
        low, high = min(min(xs), min(ys)), max(max(xs), max(ys))
        pad = (high - low) * 0.04 or 1.0
        axes.plot(
            [low - pad, high + pad],
            [low - pad, high + pad],
            color=MUTED,
            lw=1,
            ls="--",
            zorder=1,
            label="y = x",
        )
        axes.scatter(
            xs,
            ys,
            s=9,
            color=BLUE,
            alpha=0.65,
            edgecolors="none",
            zorder=2,
            label=f"{len(xs)} sampled of {output.get('elements', len(xs)):,}",
        )
        axes.legend(loc="upper left", fontsize=8)
    axes.set_xlabel(f"{reference} output")
    axes.set_ylabel(f"{candidate} output")
    axes.set_title(f"{reference} vs {candidate}: {output.get('name', '')}")
    return figure


def histogram_figure(output: dict[str, Any]) -> Any:
    """Histogram of |reference − candidate| on a log axis, exact zeros noted."""
    plt = _pyplot()
    hist = output.get("histogram", {})
    figure, axes = plt.subplots(figsize=(4.2, 3.6))
    edges, counts = hist.get("log10_edges", []), hist.get("counts", [])
    if counts:
        lefts = [10**e for e in edges[:-1]]
        widths = [10**b - 10**a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        axes.bar(
            lefts,
            counts,
            width=widths,
            align="edge",
            color=ORANGE,
            edgecolor="white",
            linewidth=0.5,
        )
        axes.set_xscale("log")
    zeros = hist.get("zeros", 0)
    if not counts:
        axes.text(
            0.5,
            0.5,
            f"all {zeros:,} elements exactly equal",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color=GREEN,
            fontsize=11,
            fontweight="bold",
        )
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        note = f"{zeros:,} elements exactly equal" if zeros else "no element exactly equal"
        axes.text(
            0.98,
            0.96,
            note,
            transform=axes.transAxes,
            ha="right",
            va="top",
            color=MUTED,
            fontsize=8,
        )
    axes.set_xlabel("absolute error")
    axes.set_ylabel("elements")
    axes.set_title(f"error histogram: {output.get('name', '')}")
    return figure


def layerwise_figure(rows: list[dict[str, Any]]) -> Any:
    """Each compared layer's max abs error in graph order; failing layers in red."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8.6, 3.2))
    values = [max(r["max_abs"], 1e-12) for r in rows]
    colours = [GREEN if r.get("passed", True) else RED for r in rows]
    axes.bar(range(len(rows)), values, color=colours, width=0.8)
    axes.set_yscale("log")
    if len(rows) <= 24:
        axes.set_xticks(
            range(len(rows)), [r["layer"] for r in rows], rotation=45, ha="right", fontsize=7
        )
    axes.set_xlabel("layer (graph order)")
    axes.set_ylabel("max abs error")
    axes.set_title("layerwise divergence: Keras layer vs ONNX tensor")
    return figure


def learning_figure(history: dict[str, list[float]]) -> Any:
    """Learning curves: loss, accuracy and AUC per epoch (training and validation)."""
    plt = _pyplot()
    panels = [
        (metric, [k for k in (metric, f"val_{metric}") if history.get(k)])
        for metric in ("loss", "accuracy", "auc")
    ]
    panels = [(m, keys) for m, keys in panels if keys]
    figure, axes_list = plt.subplots(
        1, max(1, len(panels)), figsize=(3.3 * max(1, len(panels)), 2.9), squeeze=False
    )
    for axes, (metric, keys) in zip(axes_list[0], panels, strict=True):
        for key, colour in zip(keys, (BLUE, ORANGE), strict=False):
            values = history[key]
            axes.plot(
                range(1, len(values) + 1),
                values,
                color=colour,
                lw=1.6,
                label="validation" if key.startswith("val_") else "training",
            )
        axes.set_xlabel("epoch")
        axes.set_title(metric if metric != "auc" else "ROC AUC")
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def candidates_figure(candidates: list[dict[str, Any]]) -> Any:
    """Speed-up at batch 1 per candidate; green inside the budget, grey outside."""
    plt = _pyplot()
    shown = [c for c in candidates if c.get("speedup")]
    figure, axes = plt.subplots(figsize=(6.4, 0.5 + 0.34 * max(1, len(shown))))
    names = [c["name"] for c in shown]
    axes.barh(
        range(len(shown)),
        [c["speedup"] for c in shown],
        color=[GREEN if c.get("within_budget") else "#c3c9d0" for c in shown],
    )
    axes.axvline(1.0, color=INK, lw=1)
    axes.set_yticks(range(len(shown)), names)
    axes.invert_yaxis()
    axes.set_xlabel("speed-up at batch 1 (× the float32 model)")
    axes.set_title("candidates (green: inside the budget)")
    return figure


def bench_figure(bench: dict[str, Any]) -> Any:
    """Latency (p50 with the p90–p99 band) and rows/s against batch size, ONNX and Keras."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    for key, colour, label in (("onnx", BLUE, "ONNX (portanet)"), ("keras", ORANGE, "Keras")):
        series = bench.get(key) or []
        if not series:
            continue
        batches = [s["batch"] for s in series]
        left.plot(
            batches, [s["p50_ms"] for s in series], "o-", color=colour, lw=1.6, label=f"{label} p50"
        )
        left.fill_between(
            batches,
            [s["p90_ms"] for s in series],
            [s["p99_ms"] for s in series],
            color=colour,
            alpha=0.18,
            label=f"{label} p90–p99",
        )
        right.plot(
            batches, [s["rows_per_s"] for s in series], "o-", color=colour, lw=1.6, label=label
        )
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch size")
        axes.legend(fontsize=8)
    left.set_ylabel("latency (ms)")
    left.set_title("latency per call")
    right.set_ylabel("rows / s")
    right.set_title("throughput")
    figure.tight_layout()
    return figure
