"""Small Keras models built and exported in the tests (through portanet.export.export_model),
and image files made from scikit-learn's bundled digits — nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits as 8-bit images (1,797 × 8 × 8) and their classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    return pixels, digits.target


def train_digits_cnn(folder: Path, train_rows: int = 1500, epochs: int = 8) -> Path:
    """A CNN on 16×16 grey digits with its own Rescaling(1/255), trained on the first
    ``train_rows`` digits (upscaled ×2) and saved as ``digits.keras``."""
    import keras

    keras.utils.set_random_seed(0)
    pixels, classes = digits_images()
    x = np.kron(pixels, np.ones((2, 2), dtype=np.uint8))[..., np.newaxis].astype("float32")
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:train_rows], classes[:train_rows], epochs=epochs, verbose=0)
    path = folder / "digits.keras"
    model.save(path)
    return path


def write_digit_files(
    folder: Path, start: int = 1500, suffix: str = ".png", scale: int = 4
) -> list[tuple[Path, int]]:
    """Held-out digits from ``start`` as image files (upscaled ×``scale``), named
    ``<index>_<class><suffix>``; returns (path, class) pairs."""
    from PIL import Image

    pixels, classes = digits_images()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(start, len(pixels)):
        path = folder / f"{index}_{classes[index]}{suffix}"
        Image.fromarray(np.kron(pixels[index], np.ones((scale, scale), dtype=np.uint8))).save(path)
        written.append((path, int(classes[index])))
    return written


def export(model, target: Path, **options) -> Path:
    """Export a live Keras model (or a file) through the parity gate."""
    from portanet.export import export_model

    return export_model(model, target, **options).path


def tiny_regression(folder: Path) -> Path:
    """Dense(2), linear, on 3 unnamed features: no feature names, no task."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return export(model, folder / "tiny_regression.onnx")


def embedding_classifier(folder: Path, vocabulary: int = 50) -> tuple[object, Path]:
    """Embedding(``vocabulary``, 4) over 6 ids → mean → sigmoid; the Keras model and its ONNX."""
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(vocabulary, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    return model, export(model, folder / "embedding.onnx")


def two_input_model(folder: Path) -> tuple[object, Path]:
    """Inputs ``sequence`` (5 × 3) and ``extra`` (4,) → Dense(2); the Keras model and ONNX."""
    import keras

    keras.utils.set_random_seed(3)
    sequence = keras.Input((5, 3), name="sequence")
    extra = keras.Input((4,), name="extra")
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(sequence), extra])
    model = keras.Model([sequence, extra], keras.layers.Dense(2)(merged))
    return model, export(model, folder / "two_inputs.onnx")


def sequence_model(folder: Path) -> tuple[object, Path]:
    """Conv1D over (6 × 3) sequences → 1 value; the Keras model and its ONNX."""
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.Conv1D(4, 2, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1),
        ]
    )
    return model, export(model, folder / "sequence.onnx")
