"""Layerwise localisation: a fault injected into one layer of an ONNX file is found there."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from portanet.cli import app
from portanet.errors import ParityError
from portanet.export.keras.load import quiet_tensorflow
from portanet.export.verify.layerwise import _views

quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("seeded")


def _cnn() -> keras.Model:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, activation="relu", name="conv_a"),
            layers.BatchNormalization(name="bn_a"),
            layers.Conv2D(8, 3, name="conv_b"),
            layers.ReLU(name="relu_b"),
            layers.MaxPooling2D(name="pool"),
            layers.Flatten(name="flat"),
            layers.Dense(4, activation="softmax", name="out"),
        ],
        name="probe_cnn",
    )


def _nested_tf_keras() -> tf_keras.Model:
    layers = tf_keras.layers
    features = tf_keras.Sequential(
        [
            tf_keras.Input((12,)),
            layers.Dense(10, activation="relu", name="f1"),
            layers.Dense(6, activation="tanh", name="f2"),
        ],
        name="features",
    )
    head = tf_keras.Sequential(
        [
            tf_keras.Input((6,)),
            layers.Dense(5, activation="relu", name="h1"),
            layers.Dense(2, activation="softmax", name="h2"),
        ],
        name="head",
    )
    return tf_keras.Sequential([tf_keras.Input((12,)), features, head], name="outer")


def _perturb_node(proto: onnx.ModelProto, op_type: str, layer: str) -> str:
    """Shift the weights of the ``op_type`` node tf2onnx made from ``layer``; its name."""
    node = next(n for n in proto.graph.node if n.op_type == op_type and f"/{layer}" in n.name)
    weights = next(i for i in proto.graph.initializer if i.name in node.input[1:2])
    array = onnx.numpy_helper.to_array(weights).copy()
    array += 0.25
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    return node.name


@pytest.fixture(scope="module")
def cnn_export(tmp_path_factory):
    from portanet.export import export_model

    folder = tmp_path_factory.mktemp("layerwise")
    source = folder / "cnn.keras"
    _cnn().save(source)
    # tf2onnx's clean-up keeps TensorFlow's tensor names: the table finds every layer (the
    # default, onnxruntime's, fuses conv_a with bn_a: test_default_export_still_names_the_fault)
    result = export_model(source, folder / "cnn.onnx", cleanup="tf2onnx")
    return source, result.path


def test_default_export_still_names_the_faulty_layer(cnn_export, tmp_path):
    from portanet.export import export_model

    source, _ = cnn_export
    lean = export_model(source, tmp_path / "lean.onnx")  # onnxruntime's clean-up (the default)
    proto = onnx.load(str(lean.path))
    _perturb_node(proto, "Conv", "conv_b")
    faulty = tmp_path / "faulty.onnx"
    onnx.save(proto, str(faulty))
    result = runner.invoke(app, ["verify", str(source), str(faulty), "--layerwise", "--json"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)["layerwise"]["rows"]
    failing = [row for row in rows if not row["passed"]]
    assert "conv_b" in _group(failing[0]), rows


def _group(row: dict) -> list[str]:
    return [row["layer"], *row["fused"]]


def test_verify_layerwise_names_the_layer_with_the_fault(cnn_export, tmp_path):
    source, clean = cnn_export
    proto = onnx.load(str(clean))
    _perturb_node(proto, "Conv", "conv_b")
    faulty = tmp_path / "faulty.onnx"
    onnx.save(proto, str(faulty))

    result = runner.invoke(app, ["verify", str(source), str(faulty), "--layerwise", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    rows = report["layerwise"]["rows"]
    failing = [i for i, row in enumerate(rows) if not row["passed"]]
    first = rows[failing[0]]
    assert "conv_b" in _group(first), rows
    assert report["layerwise"]["first_failure"] == first["layer"]
    assert all(row["passed"] for row in rows[: failing[0]])
    assert any("conv_a" in _group(row) or "bn_a" in _group(row) for row in rows[: failing[0]])
    assert first["max_abs"] > 1e-2 and first["violations"] > 0
    assert [row["index"] for row in rows] == list(range(1, len(rows) + 1))


def test_verify_layerwise_on_the_clean_file_passes_every_layer(cnn_export):
    source, clean = cnn_export
    result = runner.invoke(app, ["verify", str(source), str(clean), "--layerwise"])
    assert result.exit_code == 0, result.output
    assert "every layer it could compare agrees within tolerance" in result.output
    for layer in ("conv_a", "conv_b", "relu_b", "pool", "out"):
        assert layer in result.output


def test_a_failing_export_gate_localises_the_layer_and_writes_nothing(tmp_path, monkeypatch):
    import portanet.export.pipeline as export_module
    from portanet.export import export_model

    real_convert = export_module.convert
    perturbed = []

    def convert_with_a_fault(*args, **kwargs):
        converted = real_convert(*args, **kwargs)
        proto = converted.proto
        perturbed.append(
            _perturb_node(proto, "Gemm", "h1")
            if any(n.op_type == "Gemm" for n in proto.graph.node)
            else _perturb_node(proto, "MatMul", "h1")
        )
        return converted

    monkeypatch.setattr(export_module, "convert", convert_with_a_fault)
    source = tmp_path / "nested.h5"
    _nested_tf_keras().save(source)
    with pytest.raises(ParityError) as info:
        export_model(source, tmp_path / "nested.onnx")
    layerwise = info.value.report.layerwise
    assert perturbed and "head/h1" in [
        layerwise.first_failure.layer,
        *layerwise.first_failure.fused,
    ]
    assert [r.layer for r in layerwise.rows if r.passed][:2] == ["features/f1", "features/f2"]
    assert "the divergence starts at 'head/h1'" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested.h5"]


def test_export_layerwise_prints_the_table_for_an_rnn(tmp_path):
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((9, 3)),
            layers.LSTM(6, return_sequences=True, name="lstm"),
            layers.GRU(4, name="gru"),
            layers.Dense(2, name="dense"),
        ]
    )
    model.save(tmp_path / "rnn.keras")
    report = tmp_path / "r.json"
    result = runner.invoke(
        app, ["export", str(tmp_path / "rnn.keras"), "--layerwise", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "layerwise: Keras layer vs ONNX tensor" in result.output
    rows = json.loads(report.read_text())["layerwise"]["rows"]
    # The LSTM's sequence output is found time-major (tf2onnx cancels the transposes between
    # the two native ops) and compared in that layout.
    assert [r["layer"] for r in rows] == ["lstm", "gru", "dense"]
    assert rows[0]["layout"] == "axes (1, 0, 2)"
    assert all(r["passed"] and r["max_abs"] < 1e-5 for r in rows)


def test_export_layerwise_needs_the_gate(tmp_path):
    result = runner.invoke(app, ["export", "nothing.h5", "--layerwise", "--no-verify"])
    assert result.exit_code == 2 and "--layerwise" in result.output


@pytest.mark.parametrize(
    "keras_shape, perm, expected",
    [
        ((2, 4, 4, 4), (0, 3, 1, 2), "axes (0, 2, 3, 1)"),
        ((2, 5, 6, 3), (0, 3, 1, 2), "axes (0, 2, 3, 1)"),
        ((2, 7), None, "reshaped"),
        ((3, 9, 2), (1, 0, 2), "axes (1, 0, 2)"),
    ],
    ids=["nchw-square-ambiguous", "nchw", "squeezed", "time-major"],
)
def test_views_find_the_layout_tf2onnx_chose(keras_shape, perm, expected):
    from portanet.export.verify.layerwise import _best

    keras_value = np.random.default_rng(0).standard_normal(keras_shape).astype(np.float32)
    onnx_value = keras_value.transpose(perm) if perm else keras_value.reshape(2, 7, 1, 1)
    labels = [label for label, _ in _views(keras_value, onnx_value)]
    assert expected in labels
    label, report = _best("t", keras_value, onnx_value, 1e-6, 0.0)
    assert label == expected and report.max_abs == 0.0
