"""Compact chart data for the HTML report, computed at export time (numpy only).

The parity gate holds every reference (Keras) and candidate (ONNX) output; the report only needs
a few hundred sampled pairs for a scatter and a histogram of the absolute errors. This module
turns the gate's outputs into that payload, small enough to live in the ONNX metadata
(``portanet.parity`` → ``charts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Sampled (reference, candidate) pairs per chart (split between outputs).
DEFAULT_POINTS = 400
#: Histogram bins of log10(|reference − candidate|).
DEFAULT_BINS = 30
#: Outputs charted at most (a model with more gets its first ones).
MAX_OUTPUTS = 6
#: Layers kept in the layerwise divergence series at most.
MAX_LAYERS = 200


def _rounded(values: np.ndarray) -> list[float]:
    """Floats with 7 significant digits (enough for a chart, half the JSON of full repr)."""
    return [float(f"{v:.7g}") for v in values.tolist()]


def error_histogram(diff: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Histogram of ``log10`` of the non-zero absolute errors ``diff``; exact zeros and
    non-finite errors are counted apart (they have no logarithm)."""
    flat = np.asarray(diff, dtype=np.float64).ravel()
    finite = np.isfinite(flat)
    zeros = int(np.count_nonzero(flat[finite] == 0))
    positive = flat[finite & (flat > 0)]
    if positive.size == 0:
        return {
            "log10_edges": [],
            "counts": [],
            "zeros": zeros,
            "non_finite": int(np.count_nonzero(~finite)),
        }
    logs = np.log10(positive)
    low, high = float(np.floor(logs.min())), float(np.ceil(logs.max()))
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(logs, bins=bins, range=(low, high))
    return {
        "log10_edges": _rounded(edges),
        "counts": [int(c) for c in counts],
        "zeros": zeros,
        "non_finite": int(np.count_nonzero(~finite)),
    }


def chart_payload(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    layerwise: Any = None,
    points: int = DEFAULT_POINTS,
    bins: int = DEFAULT_BINS,
    seed: int = 0,
) -> dict[str, Any]:
    """What the report's parity charts need: per output a seeded sample of (reference,
    candidate) pairs and a histogram of the absolute errors over *all* elements; with
    ``layerwise`` (a ``LayerwiseReport`` or its ``to_dict()``), each compared layer's max abs
    error in graph order. Outputs present in only one mapping are skipped."""
    rng = np.random.default_rng(seed)
    names = [n for n in reference if n in candidate][:MAX_OUTPUTS]
    per_output = max(50, points // max(1, len(names)))
    outputs = []
    for name in names:
        ref = np.asarray(reference[name], dtype=np.float64).ravel()
        cand = np.asarray(candidate[name], dtype=np.float64).ravel()
        if ref.shape != cand.shape:
            continue
        chosen = (
            np.sort(rng.choice(ref.size, per_output, replace=False))
            if ref.size > per_output
            else np.arange(ref.size)
        )
        outputs.append(
            {
                "name": name,
                "elements": int(ref.size),
                "reference": _rounded(ref[chosen]),
                "candidate": _rounded(cand[chosen]),
                "histogram": error_histogram(np.abs(ref - cand), bins),
            }
        )
    payload: dict[str, Any] = {"outputs": outputs}
    if layerwise is not None:
        data = layerwise.to_dict() if hasattr(layerwise, "to_dict") else dict(layerwise)
        payload["layerwise"] = [
            {
                "layer": str(row.get("layer")),
                "class": str(row.get("class", "")),
                "max_abs": float(row.get("max_abs", 0.0)),
                "passed": bool(row.get("passed", True)),
            }
            for row in data.get("rows", [])[:MAX_LAYERS]
        ]
    return payload
