"""portanet.tables.outputs: the columns ``infer`` writes for each kind of model (ONNX files made
here with onnx.helper and run by onnxruntime), kept columns that never shadow an output, and the
checks an output path passes before any work."""

from __future__ import annotations

import errno
import json

import numpy as np
import pyarrow as pa
import pytest

import portanet
from portanet.errors import InputError
from portanet.schema import SCHEMA
from portanet.tables.outputs import (
    check_clash,
    check_output,
    disk_full,
    kept_names,
    prediction_columns,
)
from tests.helpers import COMMITTED_ONNX

onnx = pytest.importorskip("onnx")


def _softmax_model(path, classes, task, labels=None, outputs=1):
    """x (n × 3) → MatMul → Softmax, ``outputs`` times, with a portanet schema."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.eye(3, classes, dtype=np.float32) * 2, "w")
    names = [f"p{i}" if outputs > 1 else "p" for i in range(outputs)]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"])]
    nodes += [helper.make_node("Softmax", ["z"], [n], axis=1) for n in names]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, classes]) for n in names],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    schema = {
        "inputs": [{"name": "x", "shape": [None, 3]}],
        "outputs": [{"name": n, "shape": [None, classes]} for n in names],
        "task": task,
        "labels": labels,
    }
    helper.set_model_props(model, {SCHEMA: json.dumps(schema)})
    onnx.save(model, path)
    return portanet.load(path)


ROWS = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 0.5], [0.1, 0.2, 4.0], [1.0, 1.0, 0.0]])


def _decoded(column):
    return column.to_pylist() if isinstance(column, pa.Array) else list(column)


def test_binary_classifier_writes_probability_and_the_recorded_label():
    model = portanet.load(COMMITTED_ONNX)
    features = np.array([[6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.35, 31]])
    scores = model.predict(features)
    columns = prediction_columns(model, {model.output_names[0]: scores})
    assert list(columns) == ["probability", "label"]
    np.testing.assert_array_equal(columns["probability"], scores[:, 0])
    names = model.schema.labels
    threshold = model.schema.threshold if model.schema.threshold is not None else 0.5
    assert _decoded(columns["label"]) == [names[int(p >= threshold)] for p in scores[:, 0]]
    numeric = prediction_columns(model, {model.output_names[0]: scores}, numeric=True)
    assert numeric["label"].tolist() == [float(p >= threshold) for p in scores[:, 0]]


def test_multiclass_writes_a_probability_per_class_or_the_top_k(tmp_path):
    model = _softmax_model(tmp_path / "m.onnx", 3, "multiclass_classifier", ["cat", "dog", "bird"])
    scores = model.predict(ROWS)
    columns = prediction_columns(model, {"p": scores})
    assert list(columns) == ["probability_cat", "probability_dog", "probability_bird", "label"]
    assert _decoded(columns["label"]) == ["cat", "dog", "bird", "cat"]  # a tie: the first
    np.testing.assert_array_equal(columns["probability_dog"], scores[:, 1])
    top = prediction_columns(model, {"p": scores}, top_k=2)
    assert list(top) == ["label", "probability", "label_2", "probability_2"]
    order = np.argsort(-scores, axis=1, kind="stable")
    assert _decoded(top["label_2"]) == [["cat", "dog", "bird"][i] for i in order[:, 1]]
    np.testing.assert_array_equal(top["probability_2"], np.sort(scores, axis=1)[:, -2])


def test_a_row_with_nan_scores_gets_no_label(tmp_path):
    model = _softmax_model(tmp_path / "m.onnx", 3, "multiclass_classifier")
    scores = model.predict(ROWS)
    scores[1, :] = np.nan
    columns = prediction_columns(model, {"p": scores})
    assert _decoded(columns["label"]) == [0, None, 2, 0]  # class indices without labels
    numeric = prediction_columns(model, {"p": scores}, numeric=True)["label"]
    assert np.isnan(numeric[1]) and numeric[[0, 2, 3]].tolist() == [0, 2, 0]


def test_regression_and_several_outputs_get_plain_columns(tmp_path):
    regression = _softmax_model(tmp_path / "r.onnx", 2, "regression")
    scores = regression.predict(ROWS)
    assert list(prediction_columns(regression, {"p": scores})) == ["prediction_0", "prediction_1"]
    assert list(prediction_columns(regression, {"p": scores[:, :1]})) == ["prediction"]
    two = _softmax_model(tmp_path / "t.onnx", 2, None, outputs=2)
    outputs = two.predict(ROWS)
    assert isinstance(outputs, dict)
    columns = prediction_columns(two, outputs)
    assert list(columns) == ["p0_0", "p0_1", "p1_0", "p1_1"]
    np.testing.assert_array_equal(columns["p1_1"], outputs["p1"][:, 1])


def test_kept_names_and_clashes():
    assert kept_names(["id", "label=true_label", " a = b "]) == {
        "id": "id",
        "label": "true_label",
        "a": "b",
    }
    assert kept_names({"x": "y"}) == {"x": "y"}
    with pytest.raises(InputError, match=r"kept column '=x': expected NAME or NAME=NEW_NAME"):
        kept_names(["=x"])
    check_clash({"id": "id", "label": "true_label"}, ["probability", "label"])
    with pytest.raises(InputError, match=r"kept columns \['label'\].*e\.g\. label=label_input"):
        check_clash({"label": "label"}, ["probability", "label"])
    with pytest.raises(InputError, match=r"got \['k'\] twice"):
        check_clash({"a": "k", "b": "k"}, ["prediction"])


def test_an_output_is_checked_before_any_work(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("a\n1\n")
    check_output(tmp_path / "out.csv", [source], make_dirs=False)
    check_output("-", [source], make_dirs=False)
    with pytest.raises(InputError, match=r"--output .*in\.csv: expected a path other than"):
        check_output(source, [source], make_dirs=False)
    with pytest.raises(InputError, match="does not exist \\(pass --mkdir to create it\\)"):
        check_output(tmp_path / "new" / "out.csv", [source], make_dirs=False)
    check_output(tmp_path / "new" / "out.csv", [source], make_dirs=True)  # made by the writer
    assert not (tmp_path / "new").exists()


def test_a_full_disk_names_the_path_and_other_errors_pass():
    full = disk_full(OSError(errno.ENOSPC, "No space left on device"), "out.csv")
    assert full is not None and str(full) == (
        "out.csv: expected room to write the predictions, got no space left on device "
        "(nothing was written)"
    )
    on_stdout = disk_full(OSError(errno.EFBIG, "File too large"), "-")
    assert on_stdout is not None and str(on_stdout).startswith("<stdout>: expected room")
    assert disk_full(OSError(errno.EACCES, "Permission denied"), "out.csv") is None
