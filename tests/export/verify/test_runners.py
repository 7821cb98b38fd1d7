"""The gate's Keras runner: compiled once per input shape (the batch left open), the same
outputs as Keras's eager call, eager for a model a graph cannot run, the model's own errors
raised."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.export.keras.load import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

from portanet.export.verify.runners import KerasRunner  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


def _conv_net() -> keras.Model:
    inputs = keras.Input((None, None, 3), name="image")
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    outputs = keras.layers.GlobalAveragePooling2D()(hidden)
    return keras.Model(inputs, keras.layers.Dense(2, name="scores")(outputs))


def test_compiled_once_per_shape_with_the_outputs_of_the_eager_call():
    model = _conv_net()
    runner = KerasRunner(model)
    rng = np.random.default_rng(0)
    for rows in (1, 7, 3):  # one trace for every batch size of a shape
        feeds = {"image": rng.random((rows, 9, 9, 3), dtype=np.float32)}
        got = runner.run(feeds)
        eager = np.asarray(model(feeds["image"], training=False))
        np.testing.assert_allclose(got["scores"], eager, rtol=1e-6, atol=1e-6)
    assert len(runner._compiled) == 1
    runner.run({"image": rng.random((2, 12, 12, 3), dtype=np.float32)})  # a new size: a new trace
    assert len(runner._compiled) == 2 and not runner._eager


class _HostScale(keras.layers.Layer):
    """Reads a tensor's value in Python (``.numpy()``): runs eagerly, never inside a graph."""

    def call(self, inputs):
        return inputs * float(np.asarray(inputs.numpy()).max() > -1.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def test_a_model_a_graph_cannot_run_is_called_eagerly():
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(_HostScale()(inputs)))
    runner = KerasRunner(model)
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    got = runner.run({"x": x})
    assert runner._eager
    np.testing.assert_allclose(got["y"], np.asarray(model(x, training=False)), rtol=1e-6)


def test_the_models_own_error_is_raised_and_compiled_mode_kept():
    model = _conv_net()
    runner = KerasRunner(model)
    runner.run({"image": np.zeros((1, 8, 8, 3), np.float32)})
    with pytest.raises(Exception, match="(?i)negative|size|dimension|shape"):
        runner.run({"image": np.zeros((1, 1, 1, 3), np.float32)})  # smaller than the 3x3 kernel
    assert not runner._eager
