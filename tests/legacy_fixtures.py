"""Small stand-ins for the real third-party legacy ``.h5`` files, built with tf-keras.

Each is saved by tf-keras and then has its HDF5 root attributes rewritten the way the old Keras
version wrote them, so that the legacy code paths run on a bare clone (the real files live in
``../shared/data/legacy-h5`` and are tested where present, marked ``realworld``):

* ``keras224_style_mlp.h5`` imitates a Keras 2.2.4 file: ``keras_version`` 2.2.4, a Sequential
  config whose first Dense carries ``batch_input_shape``, and a ``training_config`` with the old
  Adam argument ``lr`` (which Keras 3 refuses).
* ``keras240_style_depthwise.h5`` imitates a Keras 2.4 file whose ``DepthwiseConv2D`` config
  carries ``groups`` (Keras 3 refuses the argument).
* ``teachable_style_nested.h5`` imitates a Teachable Machine export (Keras 2.4): a Sequential
  holding a Sequential feature extractor (a small MobileNet-like conv stack) and a Sequential
  dense head, images in [-1, 1].

``python scripts/make_legacy_fixtures.py`` regenerates the committed copies in
``tests/fixtures/legacy/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy"
NAMES = ("keras224_style_mlp.h5", "keras240_style_depthwise.h5", "teachable_style_nested.h5")


def _rewrite(
    path: Path, version: str, edit_config: Any = None, training_config: dict[str, Any] | None = None
) -> None:
    import h5py

    with h5py.File(path, "a") as handle:
        config = json.loads(handle.attrs["model_config"])
        if edit_config is not None:
            edit_config(config)
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = version
        handle.attrs["backend"] = "tensorflow"
        if training_config is not None:
            handle.attrs["training_config"] = json.dumps(training_config)
        if "model_weights" in handle:
            handle["model_weights"].attrs["keras_version"] = version


def _layers(config: dict[str, Any]):
    for layer in config.get("config", {}).get("layers", []):
        yield layer
        if "layers" in layer.get("config", {}):
            yield from _layers(layer)


def build(folder: Path) -> dict[str, Path]:
    """Write the three fixtures into ``folder`` (seeded: the same weights every time)."""
    import tf_keras as keras

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    paths = {name: folder / name for name in NAMES}

    mlp = keras.Sequential(
        [
            keras.layers.Dense(12, activation="relu", input_shape=(8,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    mlp.save(paths[NAMES[0]])

    def first_dense_batch_shape(config: dict[str, Any]) -> None:
        layers = config["config"]["layers"]
        if layers and layers[0]["class_name"] == "InputLayer":
            shape = layers.pop(0)["config"]["batch_input_shape"]
            layers[0]["config"]["batch_input_shape"] = shape

    _rewrite(
        paths[NAMES[0]],
        "2.2.4",
        first_dense_batch_shape,
        {
            "optimizer_config": {
                "class_name": "Adam",
                "config": {
                    "lr": 0.001,
                    "beta_1": 0.9,
                    "beta_2": 0.999,
                    "decay": 0.0,
                    "epsilon": 1e-07,
                    "amsgrad": False,
                },
            },
            "loss": "binary_crossentropy",
            "metrics": ["accuracy"],
            "sample_weight_mode": None,
            "loss_weights": None,
        },
    )

    depthwise = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(16, 16, 3)),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    depthwise.save(paths[NAMES[1]])

    def add_groups(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "DepthwiseConv2D":
                layer["config"]["groups"] = 1

    _rewrite(paths[NAMES[1]], "2.4.0", add_groups)

    features = keras.Sequential(
        [
            keras.layers.Conv2D(8, 3, strides=2, padding="same", input_shape=(32, 32, 3)),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(6.0),
            keras.layers.DepthwiseConv2D(3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(6.0),
            keras.layers.Conv2D(16, 1),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="sequential_1",
    )
    head = keras.Sequential(
        [
            keras.layers.Dense(10, activation="relu", input_shape=(16,)),
            keras.layers.Dense(2, activation="softmax"),
        ],
        name="sequential_3",
    )
    nested = keras.Sequential([features, head], name="sequential_4")
    nested.build((None, 32, 32, 3))
    nested.save(paths[NAMES[2]])
    _rewrite(paths[NAMES[2]], "2.4.0", add_groups)
    return paths


def model_configs(folder: Path) -> dict[str, Any]:
    """Each fixture's ``keras_version`` and parsed ``model_config`` (for comparing builds)."""
    import h5py

    found = {}
    for name in NAMES:
        with h5py.File(folder / name, "r") as handle:
            found[name] = (handle.attrs["keras_version"], json.loads(handle.attrs["model_config"]))
    return found
