"""portanet.images.prepare: image files to the model's input batch, compared with Pillow and
numpy done by hand (layout, dtype, range); and arrays given directly, checked against the
recorded range: raw 0..255 pixels in an NPY fed to a -1..1 model are refused (exit 2, naming
--array-range), and with --array-range 0..255 they give the answers the image files give."""

from __future__ import annotations

import numpy as np
import pytest

import portanet
from portanet.errors import InputError
from portanet.images import Recipe, check_array_range, parse_array_range, prepare, scale_array
from portanet.images.prepare import expected_bounds
from tests.helpers import run_cli
from tests.images.photos import sample_photos, write_photo_files

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


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photo_files(tmp_path_factory.mktemp("prepare_photos"))


def _pillow(path, size, mode="RGB"):
    """Pillow by hand: open, convert, stretch with bilinear (the recipe's defaults)."""
    from PIL import Image, ImageOps

    picture = ImageOps.exif_transpose(Image.open(path)).convert(mode)
    return np.asarray(picture.resize((size[1], size[0]), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_batch_of_files_is_pillows_pixels_scaled_and_laid_out(photos, layout):
    recipe = Recipe((40, 56), 3, value_range=(-1.0, 1.0), layout=layout)
    batch = prepare(photos[:5], recipe)
    expected = np.stack([_pillow(p, (40, 56)) for p in photos[:5]]).astype(np.float32)
    expected = expected / np.float32(127.5) - np.float32(1)
    if layout == "nchw":
        expected = expected.transpose(0, 3, 1, 2)
    assert batch.shape == expected.shape and batch.dtype == np.float32
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)


def test_grey_models_and_integer_inputs_get_pillows_8_bit_pixels(photos):
    grey = prepare(photos[0], Recipe((30, 30), 1, value_range=(0.0, 255.0)), dtype=np.uint8)
    assert grey.dtype == np.uint8 and grey.shape == (1, 30, 30, 1)
    np.testing.assert_array_equal(grey[0, :, :, 0], _pillow(photos[0], (30, 30), "L"))
    with pytest.raises(InputError, match=r"an integer image input takes raw 8-bit pixels"):
        prepare(photos[0], Recipe((30, 30), 3, value_range=(0.0, 1.0)), dtype=np.uint8)


def test_threads_and_an_empty_list_keep_the_shape(photos):
    recipe = Recipe((24, 24), 3, value_range=(0.0, 1.0))
    np.testing.assert_array_equal(
        prepare(photos, recipe, threads=4), np.stack([prepare(p, recipe)[0] for p in photos])
    )
    assert prepare([], recipe).shape == (0, 24, 24, 3)
    assert prepare([], Recipe((24, 20), 1, value_range=(0.0, 1.0), layout="nchw")).shape == (
        0,
        1,
        24,
        20,
    )


def test_bounds_of_a_prepared_sample_follow_mean_and_std():
    assert expected_bounds(Recipe((8, 8), 3, value_range=(-1.0, 1.0))) == (-1.0, 1.0)
    caffe = Recipe(
        (8, 8), 3, value_range=(0.0, 255.0), mean=(103.939, 116.779, 123.68), std=(1.0,) * 3
    )
    assert expected_bounds(caffe) == pytest.approx((-123.68, 255.0 - 103.939))
    torch = Recipe(
        (8, 8), 3, value_range=(0.0, 1.0), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    assert expected_bounds(torch) == pytest.approx(((0 - 0.485) / 0.229, (1 - 0.406) / 0.225))


@pytest.mark.parametrize(
    "text, bounds",
    [("0..255", (0.0, 255.0)), (" -1..1 ", (-1.0, 1.0)), ("0..1e0", (0.0, 1.0))],
)
def test_array_range_text(text, bounds):
    assert parse_array_range(text) == bounds


@pytest.mark.parametrize(
    "text, message",
    [
        ("0-255", "expected LOW..HIGH such as 0..255, got '0-255'"),
        ("a..b", "expected LOW..HIGH"),
        ("1..1", "expected finite LOW < HIGH, got '1..1'"),
        ("0..inf", "expected finite LOW < HIGH"),
    ],
)
def test_a_bad_array_range_says_what_it_expects(text, message):
    with pytest.raises(InputError, match=message):
        parse_array_range(text)


def test_values_outside_the_given_array_range_are_refused():
    recipe = Recipe((2, 2), 3, value_range=(0.0, 1.0))
    with pytest.raises(InputError, match=r"x\.npy: --array-range 0..255: got values 0..300"):
        scale_array(np.full((1, 2, 2, 3), 300.0), recipe, (0.0, 255.0), np.float32, "x.npy")
    chw = Recipe((2, 2), 3, value_range=(0.0, 1.0), layout="nchw")
    raw = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    np.testing.assert_allclose(
        scale_array(raw, chw, (0.0, 255.0), np.float32, "x"), raw / np.float32(255), rtol=1e-6
    )
