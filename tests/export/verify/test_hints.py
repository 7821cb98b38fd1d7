"""The range each model input expects, read from the layers that use it: Embedding ids,
pixel ranges, Normalization ranges."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.export.keras.load import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

from portanet.export.convert.keras_to_onnx import keras_signature, trace_keras  # noqa: E402
from portanet.export.verify.hints import input_hints  # noqa: E402
from portanet.export.verify.inputs import random_array  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


def _hints(model):
    specs, _ = keras_signature(model)
    return specs, input_hints(trace_keras(model, specs)[1], specs)


@pytest.mark.parametrize(
    "lib, dtype",
    [(keras, "float32"), (keras, "int32"), (tf_keras, "float32")],
    ids=["keras3-float-ids", "keras3-int-ids", "tf-keras-float-ids"],
)
def test_embedding_inputs_get_ids_below_the_vocabulary(lib, dtype):
    model = lib.Sequential(
        [
            lib.Input((7,), dtype=dtype),
            lib.layers.Embedding(13, 4),
            lib.layers.GlobalAveragePooling1D(),
        ]
    )
    specs, hints = _hints(model)
    hint = hints[specs[0].name]
    assert hint.integer and (hint.low, hint.high) == (0, 13) and "Embedding" in hint.reason
    values = random_array(specs[0], 500, np.random.default_rng(0), hint=hint)
    assert values.dtype == np.dtype(dtype) and values.min() == 0 and values.max() == 12
    assert np.array_equal(values, np.round(values))


def test_embedding_inside_a_nested_model_is_found():
    inner = keras.Sequential(
        [keras.Input((5,)), keras.layers.Embedding(9, 3), keras.layers.Flatten()], name="inner"
    )
    model = keras.Sequential([keras.Input((5,)), inner, keras.layers.Dense(1)])
    specs, hints = _hints(model)
    assert hints[specs[0].name].high == 9


def test_rescaled_images_get_pixels_and_normalized_inputs_their_range():
    pixels = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(2, 3)]
    )
    specs, hints = _hints(pixels)
    assert (hints[specs[0].name].low, hints[specs[0].name].high) == (0.0, 255.0)

    norm = keras.layers.Normalization()
    norm.adapt(np.array([[10.0, -3.0], [30.0, -1.0]], dtype=np.float32))
    tabular = keras.Sequential([keras.Input((2,)), norm, keras.layers.Dense(1)])
    specs, hints = _hints(tabular)
    hint = hints[specs[0].name]
    assert np.allclose(hint.low, [0.0, -4.0]) and np.allclose(hint.high, [40.0, 0.0])
    values = random_array(specs[0], 200, np.random.default_rng(1), hint=hint)
    assert (values >= hint.low).all() and (values <= hint.high).all()


def test_inputs_read_by_other_layers_get_no_hint():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Rescaling(2.0), keras.layers.Dense(2)]
    )
    assert _hints(model)[1] == {}
