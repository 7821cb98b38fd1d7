"""portanet.runtime.inspect: what `portanet inspect` shows (describe), from the committed Pima
model and from a plain ONNX file portanet did not write, and its readable summary: verdicts in
words, no chart data or long arrays."""

from __future__ import annotations

import hashlib
import json

import pytest

from portanet.errors import ModelLoadError, PortanetError
from portanet.runtime.inspect import LINE_CHARS, describe, summary
from tests.helpers import COMMITTED_ONNX


def test_describes_an_exported_model():
    info = describe(COMMITTED_ONNX)
    assert info["sha256"] == hashlib.sha256(COMMITTED_ONNX.read_bytes()).hexdigest()
    assert info["inputs"][0]["name"] and info["inputs"][0]["shape"][1] == 8
    assert len(info["outputs"]) == 1
    assert info["task"] == "binary_classifier"
    assert info["providers"] == ["CPUExecutionProvider"]
    source = info["metadata"]["portanet.source"]
    assert info["source_sha256"] == source["sha256"] and len(source["sha256"]) == 64
    assert info["opset"] == info["metadata"]["portanet.tools"]["opset"]  # recorded by export
    json.dumps(info)  # plain data: what --json prints


def test_a_wrong_checksum_is_refused():
    with pytest.raises(PortanetError, match="sha256"):
        describe(COMMITTED_ONNX, sha256="0" * 64)
    assert describe(COMMITTED_ONNX, sha256=describe(COMMITTED_ONNX)["sha256"])


def test_describes_a_file_portanet_did_not_write(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "handmade"
    path = tmp_path / "plain.onnx"
    onnx.save(model, path)
    info = describe(path)
    assert info["producer"] == "handmade"
    assert "17" in str(info["opset"])  # read from the file itself, no metadata to ask
    assert info["source_sha256"] is None and info["labels"] is None
    assert [t["name"] for t in info["inputs"]] == ["x"]


def test_a_missing_file_is_a_load_error_naming_it(tmp_path):
    with pytest.raises(ModelLoadError, match="absent.onnx: no such file"):
        describe(tmp_path / "absent.onnx")


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
