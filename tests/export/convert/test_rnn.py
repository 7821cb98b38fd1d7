"""Recurrent layers become native ONNX LSTM/GRU/RNN operators, with parity: Keras 3 and
tf-keras, both GRU ``reset_after`` settings, hard_sigmoid with each library's own slope,
Bidirectional, sequences and last outputs. Layers ONNX cannot express stay a Loop, still exact."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from portanet.export.keras.load import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

K, T = keras.layers, tf_keras.layers

pytestmark = pytest.mark.usefixtures("seeded")


def _k3(*layers, shape=(11, 3)):
    return keras.Sequential([keras.Input(shape), *layers, K.Dense(2, name="head")])


def _tfk(*layers, shape=(11, 3)):
    return tf_keras.Sequential([tf_keras.Input(shape), *layers, T.Dense(2, name="head")])


CASES = [
    ("k3-lstm", lambda: _k3(K.LSTM(6, return_sequences=True), K.LSTM(5)), "LSTM"),
    ("k3-lstm-hard-sigmoid", lambda: _k3(K.LSTM(6, recurrent_activation="hard_sigmoid")), "LSTM"),
    ("k3-gru-reset-after", lambda: _k3(K.GRU(6, return_sequences=True), K.GRU(4)), "GRU"),
    ("k3-gru-reset-before", lambda: _k3(K.GRU(6, reset_after=False)), "GRU"),
    (
        "k3-gru-hard-sigmoid-relu",
        lambda: _k3(K.GRU(6, recurrent_activation="hard_sigmoid", activation="relu")),
        "GRU",
    ),
    ("k3-simplernn", lambda: _k3(K.SimpleRNN(6, return_sequences=True), K.SimpleRNN(4)), "RNN"),
    ("k3-simplernn-no-bias", lambda: _k3(K.SimpleRNN(6, use_bias=False)), "RNN"),
    (
        "k3-bidirectional-gru",
        lambda: _k3(K.Bidirectional(K.GRU(5, return_sequences=True)), K.Bidirectional(K.LSTM(3))),
        "GRU",
    ),
    (
        "tfk-lstm-hard-sigmoid-impl1",
        lambda: _tfk(
            T.LSTM(6, recurrent_activation="hard_sigmoid", implementation=1, return_sequences=True),
            T.LSTM(4, recurrent_activation="hard_sigmoid"),
        ),
        "LSTM",
    ),
    ("tfk-gru-reset-before", lambda: _tfk(T.GRU(6, reset_after=False)), "GRU"),
    ("tfk-gru-reset-after", lambda: _tfk(T.GRU(6, reset_after=True)), "GRU"),
    ("tfk-simplernn", lambda: _tfk(T.SimpleRNN(6)), "RNN"),
]


@pytest.mark.parametrize("build, op", [pytest.param(b, o, id=i) for i, b, o in CASES])
def test_recurrent_layers_become_native_onnx_ops_with_parity(tmp_path, build, op):
    from portanet.export import export_model

    model = build()
    result = export_model(model, tmp_path / "rnn.onnx", layerwise=True)
    proto = onnx.load(str(tmp_path / "rnn.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert op in ops and "Loop" not in ops, ops
    report = result.report
    assert report.passed and report.max_abs < 1e-5
    # Every recurrent layer has an ONNX tensor the layerwise comparison finds, and agrees.
    rows = report.layerwise.rows
    assert [r.layer for r in rows] == [layer.name for layer in model.layers]
    assert all(r.passed for r in rows)


def test_hard_sigmoid_slopes_differ_between_keras_2_and_3():
    from portanet.export.convert.rnn import onnx_activation

    assert onnx_activation(keras.activations.hard_sigmoid) == ("HardSigmoid", 1 / 6, 0.5)
    assert onnx_activation(tf_keras.activations.hard_sigmoid) == ("HardSigmoid", 0.2, 0.5)
    assert onnx_activation(keras.activations.silu) is None


def test_the_hard_sigmoid_slope_reaches_the_onnx_graph(tmp_path):
    from portanet.export import export_model

    export_model(_k3(K.LSTM(4, recurrent_activation="hard_sigmoid")), tmp_path / "k3.onnx")
    export_model(_tfk(T.LSTM(4, recurrent_activation="hard_sigmoid")), tmp_path / "k2.onnx")
    slopes = []
    for name in ("k3", "k2"):
        (lstm,) = [
            n for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node if n.op_type == "LSTM"
        ]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
        assert [a.decode() for a in attrs["activations"]] == ["HardSigmoid", "Tanh", "Tanh"]
        slopes.append(attrs["activation_alpha"][0])
    assert slopes == pytest.approx([1 / 6, 0.2])


def test_layers_onnx_cannot_express_stay_exact(tmp_path):
    """A masked LSTM (Embedding with mask_zero) and go_backwards keep tf2onnx's conversion."""
    from portanet.export import export_model

    inputs = keras.Input((9,), dtype="int32")
    x = K.Embedding(20, 4, mask_zero=True)(inputs)
    x = K.LSTM(5, return_sequences=True)(x)
    outputs = K.GRU(3, go_backwards=True)(x)
    model = keras.Model(inputs, outputs)
    ids = np.random.default_rng(0).integers(0, 20, (16, 9))
    ids[:, 6:] = 0  # padded rows: the mask matters
    np.save(tmp_path / "ids.npy", ids.astype(np.int32))
    result = export_model(model, tmp_path / "masked.onnx", data=tmp_path / "ids.npy")
    assert result.report.passed and result.report.max_abs < 1e-5
