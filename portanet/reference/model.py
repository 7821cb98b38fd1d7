"""The reference network's builder (imports Keras lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from portanet.errors import InputError

INPUT_NAME = "features"
OUTPUT_NAME = "probability"


def build_pima_mlp(
    train_features: np.ndarray, *, feature_names: Sequence[str] = (), learning_rate: float = 1e-3
) -> Any:
    """The seed network: Normalization (adapted on ``train_features``) → Dense(10, relu) →
    Dense(8, relu) → Dense(1, sigmoid), compiled with adam, binary cross-entropy and accuracy.

    The Normalization layer lets the saved model take raw, unscaled features.
    """
    import keras

    width = int(train_features.shape[1])
    if feature_names and len(feature_names) != width:
        raise InputError(f"expected {width} feature names, got {len(feature_names)}")
    inputs = keras.Input(shape=(width,), name=INPUT_NAME)
    normalize = keras.layers.Normalization(axis=-1, name="normalize")
    normalize.adapt(np.asarray(train_features, dtype=np.float32))
    hidden = normalize(inputs)
    hidden = keras.layers.Dense(10, activation="relu", name="hidden_1")(hidden)
    hidden = keras.layers.Dense(8, activation="relu", name="hidden_2")(hidden)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_NAME)(hidden)
    model = keras.Model(inputs, outputs, name="pima_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
