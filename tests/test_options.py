"""portanet.options: one frozen ExportOptions whose defaults are defined without the export side
— importing it loads neither TensorFlow, Keras, tf2onnx nor onnx — and the default opset runs
on the installed onnxruntime."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from portanet.options import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL, ExportOptions
from tests.helpers import REPO


def test_options_are_frozen_hashable_and_lists_become_tuples():
    options = ExportOptions(feature_names=["a", "b"], inputs_as_nchw=["image"])
    assert options.feature_names == ("a", "b") and options.inputs_as_nchw == ("image",)
    assert hash(options) == hash(ExportOptions(feature_names=("a", "b"), inputs_as_nchw=("image",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.opset = 12  # type: ignore[misc]
    assert (options.opset, options.atol, options.rtol) == (
        DEFAULT_OPSET,
        DEFAULT_ATOL,
        DEFAULT_RTOL,
    )
    assert dataclasses.replace(options, opset=13).feature_names == ("a", "b")


def test_image_steps_name_what_the_recipe_takes():
    options = ExportOptions(image_preset="teachable-machine", image_exif=False)
    assert options.image_steps() == {
        "preset": "teachable-machine",
        "resize": None,
        "filter": None,
        "library": None,
        "exif": False,
    }


def test_importing_the_options_loads_no_export_side():
    code = (
        "import json, sys; import portanet.options; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "portanet" in loaded
    assert not loaded & {"tensorflow", "keras", "tf2onnx", "onnx"}


def test_the_default_opset_runs_on_the_installed_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(
        session.run(None, {"x": x})[0], np.exp(x) / np.exp(x).sum(), rtol=1e-6
    )
