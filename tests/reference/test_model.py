"""portanet.reference.model: the seed network's layers, its Normalization adapted to the training
rows (numpy's mean and variance), and its output a probability."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.reference.data import PIMA_FEATURES, load_pima
from portanet.reference.model import INPUT_NAME, OUTPUT_NAME, build_pima_mlp


@pytest.fixture(scope="module")
def features():
    return load_pima().features[:500]


def test_the_network_normalizes_raw_features_and_outputs_a_probability(features):
    import keras

    keras.utils.set_random_seed(0)
    model = build_pima_mlp(features, feature_names=PIMA_FEATURES, learning_rate=0.01)
    assert [layer.name for layer in model.layers] == [
        INPUT_NAME,
        "normalize",
        "hidden_1",
        "hidden_2",
        OUTPUT_NAME,
    ]
    assert [layer.units for layer in model.layers[2:]] == [10, 8, 1]
    assert model.layers[-1].activation.__name__ == "sigmoid"
    normalize = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(normalize.mean), features.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.ravel(normalize.variance), features.var(axis=0), rtol=1e-3)
    scaled = np.asarray(normalize(features))
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-4)
    probabilities = np.asarray(model(features, training=False))
    assert probabilities.shape == (500, 1)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.loss == "binary_crossentropy"


def test_feature_names_must_match_the_width(features):
    with pytest.raises(InputError, match="expected 8 feature names, got 3"):
        build_pima_mlp(features, feature_names=("a", "b", "c"))
