"""A small CNN trained on scikit-learn's bundled digits, exported through portanet's gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class Digits:
    keras_path: Path
    onnx_path: Path
    rows_path: Path  # held-out digits the network never trained on, (rows, 8, 8, 1)
    rows: np.ndarray
    labels: np.ndarray


def train_digits(folder: Path, *, epochs: int = 12, seed: int = 3) -> Digits:
    """Train a tiny CNN on 1,200 digits (a few seconds), save it as .keras, export it."""
    import keras
    from sklearn.datasets import load_digits

    from portanet.export import export_model

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(images))
    train, held = order[:1200], order[1200:]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="pixels"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax", name="digit"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(images[train], digits.target[train], epochs=epochs, batch_size=32, verbose=0)
    keras_path = folder / "digits.keras"
    model.save(keras_path)
    onnx_path = folder / "digits.onnx"
    export_model(keras_path, onnx_path)
    rows_path = folder / "held_out_digits.npy"
    np.save(rows_path, images[held])
    return Digits(keras_path, onnx_path, rows_path, images[held], digits.target[held])


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return train_digits(tmp_path_factory.mktemp("digits"))


@dataclass
class Mobile:
    onnx_path: Path
    rows_path: Path  # 96×96 crops of real photographs, (rows, 96, 96, 3), −1..1
    rows: np.ndarray


def build_mobile(folder: Path, *, seed: int = 5) -> Mobile:
    """A tiny MobileNet-like network (seeded, untrained): a 3-channel stride-2 first
    convolution, depthwise and 1×1 convolutions with ReLU6, global pooling and a dense softmax —
    the layer kinds whose int8 kernels onnxruntime runs slower or faster than float — saved as
    .keras and exported through portanet's gate; rows are 96×96 crops of real photographs."""
    import keras

    from portanet.export import export_model
    from tests.optimize.photos import photo_crops

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((96, 96, 3), name="image"),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6"),
            layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
            layers.Conv2D(24, 1),
            layers.Conv2D(48, 1, activation="relu6"),
            layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"),
            layers.Conv2D(32, 1),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4, activation="softmax", name="label"),
        ]
    )
    keras_path = folder / "mobile.keras"
    model.save(keras_path)
    onnx_path = folder / "mobile.onnx"
    export_model(keras_path, onnx_path)
    crops, _ = photo_crops(200, seed=7)
    rows = np.ascontiguousarray(crops[:, 16:208:2, 16:208:2, :])
    rows_path = folder / "mobile_rows.npy"
    np.save(rows_path, rows)
    return Mobile(onnx_path, rows_path, rows)


@pytest.fixture(scope="session")
def mobile(tmp_path_factory: pytest.TempPathFactory) -> Mobile:
    return build_mobile(tmp_path_factory.mktemp("mobile"))


@dataclass
class MobileInt8:
    """The tiny MobileNet-like net pre-processed for quantization, and its int8 QDQ model."""

    pre: Path
    int8: Path
    rows: dict[str, np.ndarray]  # 64 calibration rows under the graph's input name
    folder: Path
    keep: list[str]  # the output nodes, kept float (outputs stay float)
    options: dict  # the quantize() settings the int8 model was built with


@pytest.fixture(scope="session")
def mobile_int8(mobile: Mobile, tmp_path_factory: pytest.TempPathFactory) -> MobileInt8:
    import onnx

    from portanet.optimize.int8 import quantize
    from portanet.optimize.sensitivity import output_nodes
    from portanet.optimize.transforms import _preprocessed

    folder = tmp_path_factory.mktemp("mobile_int8")
    pre = folder / "pre.onnx"
    _preprocessed(mobile.onnx_path, pre)
    name = onnx.load(str(pre)).graph.input[0].name
    rows = {name: mobile.rows[:64]}
    options = dict(method="MinMax", calibration=rows, cache=folder / "ranges.json")
    keep = output_nodes(pre)
    int8 = folder / "int8.onnx"
    quantize(pre, int8, reduce_range=False, exclude=keep, **options)
    return MobileInt8(pre, int8, rows, folder, keep, options)
