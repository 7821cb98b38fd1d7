"""What export records about image preprocessing, through the real CLI: a preset or explicit
steps are written and shown by inspect; a geometry the file cannot tell is recorded as assumed
and said, with the flag that names it; a preset contradicting the model is refused (exit 2)."""

from __future__ import annotations

import pytest

import portanet
from tests.helpers import run_cli

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def rescaling_cnn(tmp_path_factory):
    """A small CNN that reads raw pixels through Rescaling(1/255), saved as .keras."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((32, 48, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("recorded") / "cnn.keras"
    model.save(path)
    return path


def test_a_preset_is_recorded_and_shown_by_inspect(rescaling_cnn, tmp_path):
    target = tmp_path / "m.onnx"
    result = run_cli(
        "export",
        str(rescaling_cnn),
        "--output",
        str(target),
        "--image-preset",
        "image-dataset-from-directory-crop",
    )
    assert result.returncode == 0, result.stderr.decode()
    recipe = next(iter(portanet.load(target).image_recipes.values()))
    assert (recipe.resize, recipe.filter, recipe.library, recipe.exif) == (
        "crop",
        "bilinear",
        "tensorflow",
        False,
    )
    assert recipe.value_range == (0.0, 255.0) and "Rescaling" in recipe.range_source
    shown = run_cli("inspect", str(target)).stdout.decode()
    assert "preset image-dataset-from-directory-crop" in shown
    assert "centre-cropped with tensorflow's bilinear" in shown


def test_explicit_steps_override_the_preset(rescaling_cnn, tmp_path):
    target = tmp_path / "m.onnx"
    result = run_cli(
        "export",
        str(rescaling_cnn),
        "--output",
        str(target),
        "--image-preset",
        "keras-load-img",
        "--image-filter",
        "bicubic",
        "--image-exif",
        "apply",
    )
    assert result.returncode == 0, result.stderr.decode()
    recipe = next(iter(portanet.load(target).image_recipes.values()))
    assert (recipe.filter, recipe.library, recipe.exif) == ("bicubic", "keras", True)
    assert recipe.source == "given at export"


def test_an_unnamed_geometry_is_recorded_as_assumed_and_said(rescaling_cnn, tmp_path):
    target = tmp_path / "m.onnx"
    result = run_cli("export", str(rescaling_cnn), "--output", str(target))
    assert result.returncode == 0, result.stderr.decode()
    said = " ".join(result.stderr.decode().split())
    assert "not recorded in the Keras file" in said and "--image-preset" in said
    assert "not recorded" in run_cli("inspect", str(target)).stdout.decode()


def test_a_preset_that_contradicts_the_model_is_refused(rescaling_cnn, tmp_path):
    """teachable-machine feeds -1..1; this model's Rescaling reads 0..255: exit 2, nothing
    written, the message names --image-range."""
    target = tmp_path / "m.onnx"
    result = run_cli(
        "export", str(rescaling_cnn), "--output", str(target), "--image-preset", "teachable-machine"
    )
    assert result.returncode == 2
    assert "--image-range" in result.stderr.decode() and not target.exists()
