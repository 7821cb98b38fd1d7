"""portanet.images.resize: geometry and resampling with the semantics of the library a recipe
names, against that library itself. Each preset against the author's own code on real photos
(scikit-learn's bundled photos, crops of them, digits as PNG): Teachable Machine's snippet
(Pillow ImageOps.fit, LANCZOS), keras.utils.load_img + keras.applications' preprocess_input, and
keras.utils.image_dataset_from_directory (tf.image.resize, crop_to_aspect_ratio,
pad_to_aspect_ratio) — portanet's TF-free pipeline gives the same arrays."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.images import Recipe, prepare, recipe_from_preset
from portanet.images.resize import (
    keras_crop_box,
    resize_pillow,
    resize_planes_pillow,
    resize_tensorflow,
    tf_resize,
)
from tests.images.photos import write_photo_files

pytest.importorskip("PIL")
pytest.importorskip("sklearn")
SIZE = (224, 224)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "class_a"
    return write_photo_files(folder)


def teachable_machine(path, size):
    """Teachable Machine's Keras snippet, as it exports it."""
    from PIL import Image, ImageOps

    image = Image.open(path).convert("RGB")
    image = ImageOps.fit(image, (size[1], size[0]), Image.Resampling.LANCZOS)
    return (np.asarray(image).astype(np.float32) / 127.5) - 1


def test_teachable_machine_preset_is_the_snippet_bit_for_bit(photos):
    for size in (SIZE, (96, 160)):
        recipe = recipe_from_preset("teachable-machine", size)
        mine = prepare(photos, recipe)
        for path, sample in zip(photos, mine, strict=True):
            np.testing.assert_array_equal(sample, teachable_machine(path, size), err_msg=str(path))


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_keras_load_img_with_preprocess_input_is_reproduced(photos, mode):
    keras = pytest.importorskip("keras")
    from keras.applications import imagenet_utils

    recipe = recipe_from_preset(f"keras-load-img-{mode}", SIZE)
    mine = prepare(photos, recipe)
    for path, sample in zip(photos, mine, strict=True):
        image = keras.utils.img_to_array(keras.utils.load_img(path, target_size=SIZE))
        theirs = imagenet_utils.preprocess_input(image[None], mode=mode)[0]
        np.testing.assert_allclose(sample, theirs, rtol=0, atol=1e-6, err_msg=str(path))


def test_keras_load_img_keep_aspect_ratio_is_reproduced(photos):
    keras = pytest.importorskip("keras")

    recipe = recipe_from_preset("keras-load-img-crop", (96, 160), value_range=(0.0, 255.0))
    mine = prepare(photos, recipe)
    for path, sample in zip(photos, mine, strict=True):
        image = keras.utils.load_img(path, target_size=(96, 160), keep_aspect_ratio=True)
        np.testing.assert_array_equal(sample, keras.utils.img_to_array(image), err_msg=str(path))


@pytest.mark.parametrize(
    "preset, options",
    [
        ("image-dataset-from-directory", {}),
        ("image-dataset-from-directory-crop", {"crop_to_aspect_ratio": True}),
        ("image-dataset-from-directory-pad", {"pad_to_aspect_ratio": True}),
    ],
)
@pytest.mark.parametrize("size", [SIZE, (96, 160)])
def test_image_dataset_from_directory_is_reproduced_bit_for_bit(photos, preset, options, size):
    """tf.image.resize's bilinear (no antialiasing) reproduced in numpy, and TensorFlow's
    JPEG decoding (fast integer DCT) through simplejpeg: equal arrays, not just close ones."""
    keras = pytest.importorskip("keras")

    folder = photos[0].parent.parent
    dataset = keras.utils.image_dataset_from_directory(
        folder, labels=None, image_size=size, shuffle=False, batch_size=64, **options
    )
    theirs = np.concatenate([np.asarray(batch) for batch in dataset])
    paths = list(dataset.file_paths)
    mine = prepare(paths, recipe_from_preset(preset, size, value_range=(0.0, 255.0)))
    assert len(paths) == len(photos)
    for path, a, b in zip(paths, mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "area"])
def test_tf_image_resize_filters(photos, method):
    """nearest and bilinear are bit-exact; area is bit-exact where it shrinks and within 0.02 on
    0..255 where it enlarges (the narrow crop and the 64 × 64 digits here)."""
    tf = pytest.importorskip("tensorflow")

    recipe = Recipe(
        (150, 190), 3, filter=method, library="tensorflow", exif=False, value_range=(0.0, 255.0)
    )
    worst = 0.0
    for path in photos:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
        theirs = np.asarray(tf.image.resize(image, (150, 190), method=method))
        difference = float(np.abs(prepare(path, recipe)[0] - theirs).max())
        shrinks = image.shape[0] >= 150 and image.shape[1] >= 190
        assert difference == 0.0 or (method == "area" and not shrinks), (path, difference)
        worst = max(worst, difference)
    assert worst <= 0.02, worst


def test_tf_area_when_enlarging_is_within_0_02_of_255(photos):
    tf = pytest.importorskip("tensorflow")

    recipe = Recipe(
        (500, 700), 3, filter="area", library="tensorflow", exif=False, value_range=(0.0, 255.0)
    )
    worst = 0.0
    for path in photos[:6]:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
        theirs = np.asarray(tf.image.resize(image, (500, 700), method="area"))
        worst = max(worst, float(np.abs(prepare(path, recipe)[0] - theirs).max()))
    assert worst <= 0.02, worst


# The functions themselves, against Pillow's ImageOps, keras' smart_resize and tf.image.


@pytest.mark.parametrize("size", [(224, 224), (96, 160), (300, 120)])
def test_pillow_crop_is_imageops_fit_and_pad_is_imageops_pad(size):
    """The Teachable Machine recipe's crop is ``ImageOps.fit`` with LANCZOS (its snippet)."""
    from PIL import Image, ImageOps

    from tests.images.photos import sample_photos

    height, width = size
    for photo in sample_photos():
        picture = Image.fromarray(photo).crop((13, 7, 300, 419))
        fit = resize_pillow(picture, Recipe(size, resize="crop", filter="lanczos"))
        expected = ImageOps.fit(picture, (width, height), Image.Resampling.LANCZOS)
        np.testing.assert_array_equal(np.asarray(fit), np.asarray(expected))
        padded = resize_pillow(picture, Recipe(size, resize="pad", filter="bicubic"))
        expected = ImageOps.pad(picture, (width, height), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(np.asarray(padded), np.asarray(expected))
        assert padded.size == (width, height)


@pytest.mark.parametrize(
    "width, height, size, box",
    [
        (640, 427, (224, 224), (106, 0, 533, 427)),  # landscape to square: the centre square
        (287, 412, (224, 224), (0, 62, 287, 349)),  # portrait to square
        (640, 427, (96, 160), (0, 21, 640, 405)),  # to a wider shape: rows cut
    ],
)
def test_keras_crop_box_is_the_centred_box_of_the_target_aspect(width, height, size, box):
    """load_img(keep_aspect_ratio=True): the largest centred box of the target's aspect ratio
    (integer division as keras does it), worked out by hand."""
    assert keras_crop_box(width, height, size) == box


def test_float_planes_follow_the_8_bit_resize_within_rounding():
    """Deep images are resized as float planes: the same filter and geometry as Pillow's 8-bit
    resize, without its rounding and clipping. Filters that stay within their inputs (nearest,
    bilinear, box) agree within one step of 255; LANCZOS and BICUBIC overshoot at edges, which
    the 8-bit resize clips between its two passes, so a few values (under 1 %) differ more."""
    from PIL import Image

    from tests.images.photos import sample_photos

    cases = [
        ("stretch", "nearest", 0.0),
        ("stretch", "bilinear", 1.0),
        ("crop", "bilinear", 1.0),
        ("stretch", "area", 1.0),
        ("crop", "lanczos", 8.0),
        ("pad", "bicubic", 8.0),
    ]
    for photo in sample_photos():
        picture = Image.fromarray(photo).crop((0, 0, 333, 250))
        for resize, name, bound in cases:
            recipe = Recipe((90, 120), resize=resize, filter=name)
            eight_bit = np.asarray(resize_pillow(picture, recipe)).astype(np.float32)
            planes = resize_planes_pillow(np.asarray(picture).astype(np.float32), recipe)
            assert planes.dtype == np.float32 and planes.shape == eight_bit.shape
            difference = np.abs(np.clip(planes, 0, 255) - eight_bit)
            assert float(difference.max()) <= bound, (resize, name, float(difference.max()))
            assert float((difference > 1).mean()) < 0.01, (resize, name)


@pytest.mark.parametrize("shape, size", [((37, 53, 3), (64, 48)), ((120, 90, 1), (31, 77))])
def test_tf_resize_of_random_arrays_matches_tensorflow(shape, size):
    tf = pytest.importorskip("tensorflow")

    pixels = np.random.default_rng(9).uniform(0, 255, size=shape).astype(np.float32)
    for method in ("nearest", "bilinear"):
        theirs = np.asarray(tf.image.resize(pixels, size, method=method))
        np.testing.assert_allclose(tf_resize(pixels, size, method), theirs, rtol=0, atol=1e-3)
    padded = resize_tensorflow(
        pixels, Recipe(size, shape[2], resize="pad", library="tensorflow", filter="bilinear")
    )
    theirs = np.asarray(tf.image.resize_with_pad(pixels, size[0], size[1], method="bilinear"))
    np.testing.assert_allclose(padded, theirs, rtol=0, atol=1e-3)


def test_tensorflow_crop_is_keras_smart_resize():
    keras = pytest.importorskip("keras")
    from keras.preprocessing.image import smart_resize

    from tests.images.photos import sample_photos

    pixels = sample_photos()[0][:301, :457].astype(np.float32)
    for size in ((224, 224), (96, 160), (200, 50)):
        recipe = Recipe(size, resize="crop", library="tensorflow", filter="bilinear")
        theirs = smart_resize(pixels, size, interpolation="bilinear")
        np.testing.assert_allclose(resize_tensorflow(pixels, recipe), theirs, rtol=0, atol=1e-3)
    assert keras is not None
