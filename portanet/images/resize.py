"""Geometry (stretch, centre crop, pad) and resampling with the semantics of the library a
recipe names: Pillow itself for ``pillow`` and ``keras`` (``keras.utils.load_img`` resizes with
Pillow), and a numpy reproduction of ``tf.image.resize`` without antialiasing (half-pixel
centres, float32 arithmetic as TensorFlow's kernels do it) for ``tensorflow``."""

from __future__ import annotations

from typing import Any

import numpy as np

from portanet.images.recipe import Recipe

_PILLOW_FILTERS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "area": "BOX",
}


def _pillow_filter(name: str) -> Any:
    from PIL import Image

    return getattr(Image.Resampling, _PILLOW_FILTERS[name])


def keras_crop_box(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``keras.utils.load_img(..., keep_aspect_ratio=True)``'s crop box (left, top, right,
    bottom) for a ``width`` × ``height`` picture and ``size`` (height, width)."""
    target_height, target_width = size
    crop_height = min(height, (width * target_height) // target_width)
    crop_width = min(width, (height * target_width) // target_height)
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    return left, top, left + crop_width, top + crop_height


def smart_crop(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``keras.preprocessing.image.smart_resize``'s crop (top, left, height, width), as
    ``image_dataset_from_directory(crop_to_aspect_ratio=True)`` does it."""
    target_height, target_width = size
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    top = int(float(height - crop_height) / 2)
    left = int(float(width - crop_width) / 2)
    return top, left, crop_height, crop_width


def resize_pillow(picture: Any, recipe: Recipe) -> Any:
    """An 8-bit or ``F`` PIL image brought to the recipe's size the way Pillow (``pillow``) or
    ``keras.utils.load_img`` (``keras``) does it."""
    from PIL import ImageOps

    height, width = recipe.size
    method = _pillow_filter(recipe.filter)
    if recipe.resize == "stretch":
        if picture.size == (width, height) and recipe.library == "keras":
            return picture  # load_img skips resizing a picture of the target size
        return picture.resize((width, height), method)
    if recipe.resize == "crop":
        if recipe.library == "keras":
            if picture.size == (width, height):
                return picture
            box = keras_crop_box(picture.size[0], picture.size[1], recipe.size)
            return picture.resize((width, height), method, box=box)
        return ImageOps.fit(picture, (width, height), method)
    return ImageOps.pad(picture, (width, height), method)


def resize_planes_pillow(planes: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Float planes (height × width × channels, 8-bit scale) resized channel by channel as
    Pillow ``F`` images with the recipe's filter and geometry (no rounding, no clipping)."""
    from PIL import Image

    channels = [
        np.asarray(
            resize_pillow(Image.fromarray(np.ascontiguousarray(planes[:, :, c]), "F"), recipe)
        )
        for c in range(planes.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


# --- tf.image.resize (antialias=False) in numpy ----------------------------------------------


def _bilinear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TensorFlow's ``compute_interpolation_weights`` with half-pixel centres, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(position), in_size - 1).astype(np.int64)
    return lower, upper, (position - floor).astype(np.float32)


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """``resize_nearest_neighbor`` with half-pixel centres: ``floor((o + 0.5) * scale)``."""
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    return np.clip(np.floor(position).astype(np.int64), 0, in_size - 1)


def _area_spans(in_size: int, out_size: int) -> tuple[Any, ...]:
    """``resize_area``'s cells in float32: scale, start/end of each cell, first/last pixel."""
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.arange(out_size)
    low = index.astype(np.float32) * scale
    high = (index + 1).astype(np.float32) * scale
    first = np.floor(low).astype(np.int64)
    stop = np.ceil(high).astype(np.int64)
    after_first = (first + 1).astype(np.float32)
    first_weight = np.where(after_first > high, scale, after_first - low).astype(np.float32)
    before_last = (stop - 1).astype(np.float32)
    last_weight = np.where(before_last < low, scale, high - before_last).astype(np.float32)
    return scale, low, high, first, stop, first_weight, last_weight


def _tf_area(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``resize_area`` summed in TensorFlow's order, in float32 (bit for bit when shrinking;
    within 0.02 on 0..255 at a few columns when enlarging)."""
    height, width = size
    rows_in, cols_in = values.shape[0], values.shape[1]
    row_scale, row_low, row_high, row_first, row_stop, _, _ = _area_spans(rows_in, height)
    col_scale, _, _, col_first, col_stop, first_weight, last_weight = _area_spans(cols_in, width)
    norm = np.float32(1.0 / float(np.float32(row_scale * col_scale)))
    longest = int((col_stop - col_first).max())
    first_col = np.minimum(col_first, cols_in - 1)
    out = np.empty((height, width, values.shape[2]), np.float32)
    zero = np.float32(0.0)
    for y in range(height):
        total = np.zeros((width, values.shape[2]), np.float32)
        low, high = row_low[y], row_high[y]
        for i in range(int(row_first[y]), int(row_stop[y])):
            if i < low:
                weight = row_scale if i + 1 > high else np.float32(i + 1) - low
            else:
                weight = high - np.float32(i) if i + 1 > high else np.float32(1.0)
            row = values[min(i, rows_in - 1)]
            partial = row[first_col] * first_weight[:, None]
            for k in range(1, longest):
                at = col_first + k
                taken = row[np.minimum(at, cols_in - 1)]
                last = (at == col_stop - 1)[:, None]
                middle = (at < col_stop - 1)[:, None]
                partial = partial + np.where(
                    middle, taken, np.where(last, taken * last_weight[:, None], zero)
                )
            total = total + partial * np.float32(weight)
        out[y] = total * norm
    return out


def tf_resize(pixels: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """``tf.image.resize(pixels, size, method, antialias=False)`` for one height × width ×
    channels image: float32 out, as TensorFlow returns it."""
    height, width = size
    values = pixels.astype(np.float32, copy=False)
    if method == "nearest":
        rows = _nearest_indices(values.shape[0], height)
        cols = _nearest_indices(values.shape[1], width)
        return values[rows][:, cols]
    if method == "area":
        return _tf_area(values, size)
    y_low, y_high, y_lerp = _bilinear_weights(values.shape[0], height)
    x_low, x_high, x_lerp = _bilinear_weights(values.shape[1], width)
    x_lerp = x_lerp[np.newaxis, :, np.newaxis]
    top_rows, bottom_rows = values[y_low], values[y_high]
    top_left, top_right = top_rows[:, x_low], top_rows[:, x_high]
    bottom_left, bottom_right = bottom_rows[:, x_low], bottom_rows[:, x_high]
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp[:, np.newaxis, np.newaxis]


def _resize_with_pad(pixels: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """``tf.image.resize_with_pad``: resized to fit (float32 ratio, floor), centred on black."""
    target_height, target_width = size
    height, width = np.float32(pixels.shape[0]), np.float32(pixels.shape[1])
    ratio = max(width / np.float32(target_width), height / np.float32(target_height))
    new_height_f, new_width_f = height / ratio, width / ratio
    new_height, new_width = int(np.floor(new_height_f)), int(np.floor(new_width_f))
    pad_top = max(0, int(np.floor((np.float32(target_height) - new_height_f) / np.float32(2))))
    pad_left = max(0, int(np.floor((np.float32(target_width) - new_width_f) / np.float32(2))))
    resized = tf_resize(pixels, (new_height, new_width), method)
    out = np.zeros((target_height, target_width, pixels.shape[2]), dtype=np.float32)
    out[pad_top : pad_top + new_height, pad_left : pad_left + new_width] = resized
    return out


def resize_tensorflow(pixels: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Pixels (height × width × channels) brought to the recipe's size as
    ``image_dataset_from_directory`` does: ``tf.image.resize``, ``crop_to_aspect_ratio``
    (``smart_resize``) or ``pad_to_aspect_ratio`` (``tf.image.resize_with_pad``)."""
    if recipe.resize == "crop":
        top, left, crop_height, crop_width = smart_crop(
            pixels.shape[0], pixels.shape[1], recipe.size
        )
        pixels = pixels[top : top + crop_height, left : left + crop_width]
    elif recipe.resize == "pad":
        return _resize_with_pad(pixels, recipe.size, recipe.filter)
    return tf_resize(pixels, recipe.size, recipe.filter)
