"""Pipeline parity on real photos (scikit-learn's bundled photos, crops, digits as PNG): for
every preset, the author's pipeline (Pillow, keras.utils.load_img, preprocess_input,
tf.image.resize as image_dataset_from_directory) + Keras and portanet's TF-free pipeline +
ONNX agree on every file's top-1 within 1e-4; the real Teachable Machine file too."""

from __future__ import annotations

import json

import numpy as np
import pytest

import portanet
from portanet.errors import ParityError
from portanet.export import export_model
from portanet.export.verify.pipeline_parity import check, compare_pipelines, image_files
from tests.helpers import run_cli
from tests.images.photos import write_photo_files

pytest.importorskip("PIL")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_photo_files(folder)
    return folder


@pytest.fixture(scope="module")
def small_cnn():
    """A small CNN on 64 × 64 RGB with random weights and a 4-class softmax."""
    keras = pytest.importorskip("keras")

    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


PRESETS = [
    ("teachable-machine", None),
    ("keras-load-img-tf", None),
    ("keras-load-img-caffe", None),
    ("keras-load-img-torch", None),
    ("keras-load-img-crop", "0..1"),
    ("image-dataset-from-directory", "0..1"),
    ("image-dataset-from-directory-crop", "0..1"),
    ("image-dataset-from-directory-pad", "-1..1"),
]


@pytest.mark.parametrize("preset, image_range", PRESETS, ids=[p for p, _ in PRESETS])
def test_every_preset_agrees_with_the_authors_pipeline(
    small_cnn, photos, tmp_path, preset, image_range
):
    result = export_model(
        small_cnn,
        tmp_path / "m.onnx",
        image_range=image_range,
        image_steps={"preset": preset},
    )
    runtime = portanet.load(result.path)
    assert runtime.image_recipes[runtime.input_names[0]].preset == preset
    report = compare_pipelines(small_cnn, runtime, image_files(photos))
    assert len(report.files) == 16
    assert report.agreement == 1.0 and report.max_abs <= 1e-4, report.to_dict()
    assert report.input_max_abs <= 1e-5  # the samples themselves: equal, up to float32 rounding
    check(report)


def test_a_16_bit_file_differs_from_the_authors_pipeline_and_says_which(
    small_cnn, photos, tmp_path
):
    """The author's `Image.open(...).convert("RGB")` clips a 16-bit PNG to white; portanet
    scales it by its bit depth. Pipeline parity names the file instead of passing it."""
    from PIL import Image

    result = export_model(
        small_cnn, tmp_path / "m.onnx", image_steps={"preset": "teachable-machine"}
    )
    grey = np.asarray(Image.open(photos / "photo0_crop1.png").convert("L")).astype(np.uint16)
    Image.fromarray(grey * 257).save(tmp_path / "deep16.png")
    report = compare_pipelines(small_cnn, portanet.load(result.path), [tmp_path / "deep16.png"])
    assert report.input_max_abs > 0.5
    with pytest.raises(ParityError, match="deep16.png"):
        check(report)


@pytest.fixture
def teachable(legacy_mobilenet, tmp_path_factory):
    """The real Teachable Machine file exported with its snippet's recipe and a folder of photos
    as the gate's data (pipeline parity at export)."""
    folder = tmp_path_factory.mktemp("tm")
    (folder / "labels.txt").write_text("0 Class 1\n1 Class 2\n2 Class 3\n")
    result = export_model(
        legacy_mobilenet,
        folder / "tm.onnx",
        labels=folder / "labels.txt",
        image_steps={"preset": "teachable-machine"},
        data=write_photo_files(folder / "photos")[0].parent,
    )
    return legacy_mobilenet, result, folder


def test_the_real_teachable_machine_file_through_both_pipelines(teachable):
    source, result, folder = teachable
    assert result.pipeline.agreement == 1.0 and result.pipeline.max_abs <= 1e-4
    verified = run_cli(
        "verify", str(source), str(result.path), "--data", str(folder / "photos"), "--json"
    )
    assert verified.returncode == 0, verified.stderr.decode()
    report = json.loads(verified.stdout)
    assert report["top1_agreement"] == 1.0 and report["max_abs"] <= 1e-4
    assert len(report["files"]) == 16 and report["input_max_abs"] == 0.0
    inspected = run_cli("inspect", str(result.path)).stdout.decode()
    assert "preset teachable-machine" in inspected and "lanczos" in inspected
    stored = portanet.load(result.path).metadata["portanet.parity"]["pipeline"]
    assert stored["passed"] is True and stored["top1_agreement"] == 1.0
    _predict_images_is_the_teachable_machine_snippet(source, result, folder)


def _predict_images_is_the_teachable_machine_snippet(source, result, folder):
    """A deployment script: `portanet.load(...).predict_images(paths | bytes | PIL)` gives what
    the author's Keras code gives, class names included."""
    from PIL import Image, ImageOps

    from portanet.export.keras.load import load_keras

    paths = sorted((folder / "photos").glob("photo*.jpg"))
    model = portanet.load(result.path)
    probabilities = model.predict_images([paths[0], paths[1].read_bytes(), Image.open(paths[2])])
    author = []
    for path in paths[:3]:
        image = ImageOps.fit(Image.open(path).convert("RGB"), (224, 224), Image.Resampling.LANCZOS)
        author.append(np.asarray(image).astype(np.float32) / 127.5 - 1)
    expected = np.asarray(load_keras(source).model(np.stack(author), training=False))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    names = model.label_names_for(probabilities)
    assert list(names) == [f"Class {i + 1}" for i in expected.argmax(axis=1)]
