"""Every Pillow pixel format of a real photo is scaled by its bit depth, never clipped; EXIF
orientation is applied or ignored as the recipe says."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.images import Recipe, prepare
from tests.images.photos import sample_photos, write_png48

pytest.importorskip("PIL")
pytest.importorskip("sklearn")

SIZE = (64, 96)


@pytest.fixture(scope="module")
def photo():
    """A 200 × 300 crop of scikit-learn's flower photo (RGB uint8) and its grey version."""
    from PIL import Image

    rgb = sample_photos()[1][100:300, 200:500]
    return rgb, np.asarray(Image.fromarray(rgb).convert("L"))


def _grey(channels: int = 1) -> Recipe:
    return Recipe(SIZE, channels, filter="bilinear", value_range=(0.0, 1.0))


def _saved(tmp_path, name, picture, **options):
    path = tmp_path / name
    picture.save(path, **options)
    return path


@pytest.mark.parametrize(
    "name, make",
    [
        ("grey16.png", lambda g: (g.astype(np.uint16) * 257, "I;16")),
        ("grey16.tif", lambda g: (g.astype(np.uint16) * 257, "I;16")),
        ("grey32.tif", lambda g: ((g.astype(np.int64) * (2**31 - 1)) // 255).astype(np.int32)),
        ("float.tif", lambda g: (g.astype(np.float32) / 255, "F")),
    ],
    ids=["I;16 png", "I;16 tiff", "I tiff", "F tiff"],
)
def test_deep_grey_formats_match_the_8_bit_photo(tmp_path, photo, name, make):
    """The issue's bug: a 16-bit PNG was clipped to white, a float TIFF to black."""
    from PIL import Image

    _, grey = photo
    made = make(grey)
    array, mode = made if isinstance(made, tuple) else (made, None)
    picture = Image.fromarray(array, mode) if mode == "F" else Image.fromarray(array)
    path = _saved(tmp_path, name, picture)
    eight_bit = _saved(tmp_path, "grey8.png", Image.fromarray(grey))
    deep, reference = prepare([path, eight_bit], _grey())
    assert 0.3 < reference.mean() < 0.7  # a real photo, neither white nor black
    assert np.abs(deep - reference).max() < 2.5 / 255  # Pillow rounds the 8-bit resize


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_8_bit_modes_are_converted_as_pillow_converts_them(tmp_path, photo, mode):
    from PIL import Image

    rgb, _ = photo
    picture = Image.fromarray(rgb).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _saved(tmp_path, f"photo_{mode}{suffix}", picture)
    colour = prepare(path, _grey(3))[0]
    assert colour.shape == (*SIZE, 3) and colour.dtype == np.float32
    assert colour.min() >= 0.0 and colour.max() <= 1.0
    if mode == "1":
        assert set(
            np.unique(prepare(path, Recipe(SIZE, 1, filter="nearest", value_range=(0.0, 1.0))))
        ) <= {0.0, 1.0}
    else:  # the same photo in every mode: close to the RGB one (palette and JPEG lose a little)
        reference = prepare(_saved(tmp_path, "rgb.png", Image.fromarray(rgb)), _grey(3))[0]
        if mode in ("L", "LA"):  # grey in three channels: the photo's luminance (ITU-R 601)
            reference = np.repeat(reference @ np.float32([0.299, 0.587, 0.114])[:, None], 3, 2)
        limit = 0.2 if mode in ("P", "CMYK") else 0.02
        assert np.abs(colour - reference).mean() < limit, mode


def test_48_bit_rgb_png_is_read_by_its_high_bytes(tmp_path, photo):
    from PIL import Image

    rgb, _ = photo
    path = write_png48(tmp_path / "rgb48.png", rgb.astype(np.uint16) * 257)
    reference = _saved(tmp_path, "rgb8.png", Image.fromarray(rgb))
    deep, eight = prepare([path, reference], _grey(3))
    np.testing.assert_array_equal(deep, eight)


def test_a_float_image_outside_0_to_1_is_refused_not_clipped(tmp_path, photo):
    from PIL import Image

    _, grey = photo
    path = _saved(tmp_path, "f255.tif", Image.fromarray(grey.astype(np.float32), "F"))
    with pytest.raises(InputError, match=r"f255.tif: a float image is read as 0..1"):
        prepare(path, _grey())


def test_exif_orientation_is_applied_or_ignored_as_the_recipe_says(tmp_path, photo):
    from PIL import Image

    rgb, _ = photo
    picture = Image.fromarray(rgb)
    exif = picture.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    path = _saved(tmp_path, "rotated.jpg", picture, exif=exif, quality=95)
    upright = _saved(
        tmp_path, "upright.jpg", picture.transpose(Image.Transpose.ROTATE_270), quality=95
    )
    stored = _saved(tmp_path, "stored.jpg", picture, quality=95)
    size = (96, 64)
    applied, turned = prepare([path, upright], Recipe(size, 3, value_range=(0.0, 1.0)))
    assert np.abs(applied - turned).mean() < 0.02
    ignored, plain = prepare([path, stored], Recipe(size, 3, exif=False, value_range=(0.0, 1.0)))
    np.testing.assert_array_equal(ignored, plain)


def test_bytes_paths_and_pil_images_give_the_same_sample(tmp_path, photo):
    from PIL import Image

    rgb, _ = photo
    path = _saved(tmp_path, "photo.png", Image.fromarray(rgb))
    recipe = Recipe((224, 224), 3, resize="crop", filter="lanczos", value_range=(-1.0, 1.0))
    batch = prepare([path, path.read_bytes(), Image.open(path)], recipe, threads=2)
    assert batch.shape == (3, 224, 224, 3)
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], batch[2])


def test_a_broken_file_names_itself(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="broken.png"):
        prepare(path, _grey())
    with pytest.raises(InputError, match=r"image #0 \(bytes\)"):
        prepare([b"nope"], _grey())
