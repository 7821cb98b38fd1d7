"""inspect's readable summary: verdicts in words, no chart data or long arrays."""

from __future__ import annotations

import json

from portanet.runtime.inspect import LINE_CHARS, describe, summary
from tests.helpers import COMMITTED_ONNX


def _info(metadata):
    return {"metadata": metadata}


def test_parity_metrics_source_and_lineage_read_as_sentences():
    parity = {
        "passed": True,
        "samples": 1032,
        "tolerance_mode": "strict",
        "inputs_from": "300 rows of ids.npy",
        "outputs": [{"max_abs": 2.5e-7, "flips": 0}],
        "charts": {"probability": {"reference": list(range(400))}},
    }
    lineage = {
        "base": {"file": "m.onnx"},
        "candidate": "int8-dynamic",
        "transforms": ["int8-dynamic"],
        "measured": {"max_abs": 0.019, "agreement": 0.9942},
        "charts": {"x": list(range(400))},
    }
    lines = dict(
        summary(
            _info(
                {
                    "portanet.parity": parity,
                    "portanet.source": {"file": "m.h5", "format": "h5", "loader": "keras"},
                    "portanet.lineage": lineage,
                    "portanet.other": {"values": list(range(100)), "charts": [1, 2]},
                }
            )
        )
    )
    assert lines["parity"].startswith("passed (strict): max abs 2.5e-07 over 1032 samples")
    assert lines["source"] == "m.h5 (format h5, loader keras)"
    assert lines["lineage"].startswith("int8-dynamic of m.onnx (transforms: int8-dynamic)")
    assert "max abs 0.019" in lines["lineage"]
    assert json.loads(lines["other"]) == {"values": "[100 values]"}
    assert all(len(text) <= LINE_CHARS for text in lines.values())


def test_describe_names_the_file_not_a_path_of_this_machine():
    info = describe(COMMITTED_ONNX)
    assert info["path"] == COMMITTED_ONNX.name
    labels = [label for label, _ in summary(info)]
    assert "feature names" in labels and "parity" in labels and "schema" not in labels
