"""Each preset against the author's own code on real photos (scikit-learn's bundled photos,
crops of them, digits as PNG): Teachable Machine's snippet (Pillow ImageOps.fit, LANCZOS),
keras.utils.load_img + keras.applications' preprocess_input, and
keras.utils.image_dataset_from_directory (tf.image.resize, crop_to_aspect_ratio,
pad_to_aspect_ratio) — portanet's TF-free pipeline gives the same arrays."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.images import Recipe, prepare, recipe_from_preset
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
