"""Arrays given directly to an image model are checked against its recorded range: raw
0..255 pixels in an NPY fed to a -1..1 model are refused (exit 2, naming --array-range), and
with --array-range 0..255 they give the answers the image files give."""

from __future__ import annotations

import numpy as np
import pytest

import portanet
from portanet.errors import InputError
from portanet.images import Recipe, check_array_range, scale_array
from tests.helpers import run_cli
from tests.images.photos import sample_photos

pytest.importorskip("PIL")
pytest.importorskip("sklearn")


def test_the_range_check_refuses_raw_pixels_and_accepts_prepared_ones():
    recipe = Recipe((8, 8), 3, value_range=(-1.0, 1.0))
    pixels = sample_photos()[0][:8, :8][None].astype(np.float32)
    with pytest.raises(InputError, match=r"x.npy.*-1..1.*--array-range"):
        check_array_range(pixels, recipe, "x.npy")
    check_array_range(pixels / 127.5 - 1, recipe, "x.npy")
    scaled = scale_array(pixels, recipe, (0.0, 255.0), np.float32, "x.npy")
    np.testing.assert_array_equal(scaled, pixels / np.float32(127.5) - np.float32(1))
    caffe = Recipe(
        (8, 8),
        3,
        value_range=(0.0, 255.0),
        channel_order="bgr",
        mean=(103.939, 116.779, 123.68),
        std=(1.0, 1.0, 1.0),
    )
    check_array_range(scale_array(pixels, caffe, (0.0, 255.0), np.float32, "x"), caffe, "x")


@pytest.fixture(scope="module")
def minus_one_model(tmp_path_factory):
    """A small CNN exported with -1..1 recorded (as a MobileNet is), and a real photo as JPEG."""
    keras = pytest.importorskip("keras")
    from PIL import Image

    from tests.builders import export

    folder = tmp_path_factory.mktemp("arrays")
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    onnx_file = export(model, folder / "m.onnx", image_range="-1..1")
    photo = Image.fromarray(sample_photos()[0]).resize((32, 32), Image.Resampling.BILINEAR)
    photo.save(folder / "photo.png")
    np.save(folder / "raw.npy", np.asarray(photo)[None])  # uint8 0..255
    return onnx_file, folder


def test_raw_uint8_npy_is_refused_then_scaled_with_array_range(minus_one_model, tmp_path):
    onnx_file, folder = minus_one_model
    refused = run_cli("infer", str(onnx_file), str(folder / "raw.npy"))
    assert refused.returncode == 2
    assert "--array-range" in refused.stderr.decode() and "raw.npy" in refused.stderr.decode()
    scaled = run_cli(
        "infer",
        str(onnx_file),
        str(folder / "raw.npy"),
        "--array-range",
        "0..255",
        "--output",
        str(tmp_path / "a.npy"),
    )
    assert scaled.returncode == 0, scaled.stderr.decode()
    model = portanet.load(onnx_file)
    from_file = model.predict_images(folder / "photo.png")
    np.testing.assert_allclose(np.load(tmp_path / "a.npy")[:, :3], from_file, atol=1e-6)
