"""Conversion options and refusals: unconvertible ops named by layer, the 2 GB policy, a fixed
batch size, channels-first image inputs, readable input and output names."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import portanet
from portanet.cli import app
from portanet.errors import ConversionError, InputError
from portanet.export.keras.load import from_model, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

from portanet.export import export_model  # noqa: E402
from portanet.export.convert.keras_to_onnx import convert, keras_signature  # noqa: E402

runner = CliRunner()
layers = keras.layers

pytestmark = pytest.mark.usefixtures("seeded")


@keras.saving.register_keras_serializable(package="portanet_tests")
class Probit(keras.layers.Layer):
    """The inverse error function: TensorFlow's Erfinv, which tf2onnx cannot convert."""

    def call(self, inputs):
        return keras.ops.erfinv(keras.ops.tanh(inputs) * 0.9)


def _probit_model() -> keras.Model:
    inputs = keras.Input((4,), name="x")
    hidden = layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, layers.Dense(2, name="out")(Probit(name="probit")(hidden)))


def _image_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((10, 12, 3), name="pixels"),
            layers.Conv2D(4, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ],
        name="img",
    )


def test_an_unconvertible_op_is_refused_with_its_layer(capfd):
    with pytest.raises(ConversionError) as info:
        convert(from_model(_probit_model()))
    message = str(info.value)
    assert "TensorFlow op Erfinv in layer 'probit' (Probit)" in message
    assert "opset 17" in message and "nothing was written" in message
    assert "is not supported" not in capfd.readouterr().err  # tf2onnx's own log is kept back


def test_cli_exits_3_naming_the_layer_and_writes_nothing(tmp_path):
    source = tmp_path / "probit.keras"
    _probit_model().save(source)
    result = runner.invoke(
        app, ["export", str(source), "--output", str(tmp_path / "p.onnx"), "--allow-unsafe"]
    )  # a custom layer: trusted, it is ours
    assert result.exit_code == 3, result.output
    assert "layer 'probit' (Probit)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probit.keras"]


def test_models_over_the_protobuf_limit_are_refused_clearly(tmp_path, monkeypatch):
    import portanet.export.convert.keras_to_onnx as conversion

    model = _image_model()
    weights = conversion.weight_bytes(model)
    assert weights == sum(w.numpy().nbytes for w in model.weights)
    monkeypatch.setattr(conversion, "PROTOBUF_LIMIT", conversion.GRAPH_HEADROOM + weights - 1)
    with pytest.raises(ConversionError, match="at most 2 GB .* even with its large weights"):
        export_model(model, tmp_path / "big.onnx")
    assert list(tmp_path.iterdir()) == []


def test_fixed_batch_size(tmp_path):
    source = tmp_path / "img.keras"
    model = _image_model()
    model.save(source)
    result = runner.invoke(
        app, ["export", str(source), "--batch-size", "4", "--report", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    dims = onnx.load(str(tmp_path / "img.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 10, 12, 3]
    from portanet.export.verify.inputs import RANDOM_BATCHES

    report = json.loads((tmp_path / "r.json").read_text())
    batches = -(-sum(RANDOM_BATCHES) // 4)
    assert report["passed"] and report["samples"] == 4 * batches
    assert f"{batches} random batches of 4" in report["inputs_from"]
    runtime = portanet.load(tmp_path / "img.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (4, 10, 12, 3)).astype(np.float32)
    assert np.abs(runtime.predict(x) - np.asarray(model(x))).max() < 1e-5
    # Any number of rows: run in chunks of 4, the last one padded and the padding dropped.
    many = np.random.default_rng(2).uniform(-1, 1, (7, 10, 12, 3)).astype(np.float32)
    assert runtime.predict(many).shape == (7, *np.asarray(model(many[:1])).shape[1:])
    assert np.abs(runtime.predict(many) - np.asarray(model(many))).max() < 1e-5
    bad = runner.invoke(app, ["export", str(source), "--batch-size", "0"])
    assert bad.exit_code == 2 and "--batch-size" in bad.output


def test_inputs_as_nchw(tmp_path):
    from portanet.export.verify.runners import NCHW_KEY

    model = _image_model()
    result = export_model(model, tmp_path / "nchw.onnx", inputs_as_nchw=["pixels"])
    assert result.report.passed and result.report.max_abs < 1e-5
    runtime = portanet.load(result.path)
    assert runtime.schema.inputs[0].shape == (None, 3, 10, 12)
    assert runtime.schema.extra[NCHW_KEY] == ["pixels"]
    x = np.random.default_rng(2).uniform(-1, 1, (5, 10, 12, 3)).astype(np.float32)
    got = runtime.predict(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert np.abs(got - np.asarray(model(x))).max() < 1e-5


@pytest.mark.parametrize(
    "names, message",
    [
        (["image"], "expected one of the inputs ['pixels']"),
        (["pixels"], "expected an image input of rank 4"),
    ],
    ids=["unknown-name", "not-an-image"],
)
def test_inputs_as_nchw_refuses_what_it_cannot_transpose(names, message, tmp_path):
    model = (
        _image_model()
        if names == ["image"]
        else keras.Sequential([keras.Input((5,), name="pixels"), layers.Dense(2)])
    )
    with pytest.raises(InputError) as info:
        export_model(model, tmp_path / "x.onnx", inputs_as_nchw=names)
    assert message in str(info.value)


def test_cli_inputs_as_nchw_option(tmp_path):
    source = tmp_path / "img.keras"
    _image_model().save(source)
    result = runner.invoke(app, ["export", str(source), "--inputs-as-nchw", "pixels"])
    assert result.exit_code == 0, result.output
    dims = onnx.load(str(tmp_path / "img.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 10, 12]


def test_names_of_models_built_in_memory_come_from_their_layers():
    inputs = keras.Input((3,))
    model = keras.Sequential([inputs, layers.Dense(2, name="scores")])
    specs, outputs = keras_signature(model)
    assert [s.name for s in specs] == [inputs._keras_history.operation.name]
    assert outputs == ["scores"]


def test_dict_inputs_and_outputs_keep_their_keys(tmp_path):
    a, b = keras.Input((3,), name="left"), keras.Input((2,), name="right")
    joined = layers.Concatenate()([a, b])
    model = keras.Model(
        {"right": b, "left": a},
        {
            "total": layers.Dense(1, name="total")(joined),
            "parts": layers.Dense(2, name="parts")(joined),
        },
    )
    result = export_model(model, tmp_path / "dict.onnx")
    runtime = portanet.load(result.path)
    assert sorted(runtime.input_names) == ["left", "right"]
    assert sorted(runtime.output_names) == ["parts", "total"]
    feeds = {"left": np.ones((2, 3), np.float32), "right": np.zeros((2, 2), np.float32)}
    expected = model(feeds)
    got = runtime.predict(feeds)
    for name in ("parts", "total"):
        assert np.abs(got[name] - np.asarray(expected[name])).max() < 1e-6


def test_freeze_matches_tensorflows_freezing_without_its_concrete_function():
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from portanet.export.convert.keras_to_onnx import freeze

    inputs = keras.Input((5,), name="x")
    hidden = layers.Dense(4, activation="tanh")(inputs)
    model = keras.Model(inputs, layers.Dense(2, name="y")(hidden))
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, 5), tf.float32)
    )
    graph_def, tf_inputs, tf_outputs = freeze(concrete)
    reference = convert_variables_to_constants_v2(
        concrete, lower_control_flow=False, aggressive_inlining=True
    )
    assert tf_inputs == [t.name for t in reference.inputs]
    assert tf_outputs == [t.name for t in reference.outputs]
    assert not [n.op for n in graph_def.node if "Variable" in n.op]  # the weights are constants
    x = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    run = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(graph_def, name=""), []
    ).prune(tf_inputs, tf_outputs)
    np.testing.assert_allclose(run(tf.constant(x))[0], model(x), rtol=1e-6, atol=1e-6)
