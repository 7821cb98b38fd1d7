"""Applying a :class:`~portanet.images.recipe.Recipe`: image files, bytes or PIL images to the
model's input array (:func:`prepare`), and the check of arrays given directly against the
recorded value range (:func:`check_array_range`, :func:`scale_array`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.images.decode import (
    ImageSource,
    describe_source,
    encoded_bytes,
    in_colour,
    open_image,
    tensorflow_jpeg,
    upright,
)
from portanet.images.recipe import Recipe
from portanet.images.resize import resize_pillow, resize_planes_pillow, resize_tensorflow


def pixels_of(source: ImageSource, recipe: Recipe, origin: str) -> np.ndarray:
    """One image decoded, coloured and resized as the recipe says: height × width × channels,
    uint8 where Pillow resized an 8-bit picture, float32 otherwise (8-bit scale)."""
    if recipe.library == "tensorflow":
        data = encoded_bytes(source)
        jpeg = tensorflow_jpeg(data, recipe.channels, recipe.exif, origin) if data else None
        if jpeg is not None:
            return resize_tensorflow(jpeg, recipe)
    picture = upright(open_image(source, origin), recipe.exif)
    coloured = in_colour(picture, recipe.channels, origin)
    if recipe.library == "tensorflow":
        pixels = coloured if isinstance(coloured, np.ndarray) else np.asarray(coloured)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        return resize_tensorflow(pixels, recipe)
    if isinstance(coloured, np.ndarray):
        return resize_planes_pillow(coloured, recipe)
    resized = np.asarray(resize_pillow(coloured, recipe))
    return resized[:, :, np.newaxis] if resized.ndim == 2 else resized


def finish(pixels: np.ndarray, recipe: Recipe, dtype: np.dtype, origin: str) -> np.ndarray:
    """Pixels on the 8-bit scale (height × width × channels) as one sample: channel order,
    value range, mean/std in float32 as keras.applications' ``preprocess_input`` computes
    them, then the graph's layout."""
    if recipe.channel_order == "bgr" and recipe.channels >= 3:
        pixels = np.concatenate([pixels[:, :, 2::-1], pixels[:, :, 3:]], axis=2)
    if recipe.value_range is None:
        raise InputError(
            f"{origin}: expected the pixel value range the model was trained on (recorded at "
            f"export, or given with --image-range such as 0..1, -1..1, 0..255), got none"
        )
    low, high = recipe.value_range
    if dtype.kind in "iu":
        if (low, high) != (0.0, 255.0) or recipe.mean is not None or pixels.dtype != np.uint8:
            raise InputError(
                f"{origin}: an integer image input takes raw 8-bit pixels (0..255), got the "
                f"value range {low:g}..{high:g} or a resampler that gives fractions"
            )
        sample = pixels.astype(dtype)
    else:
        sample = pixels.astype(np.float32)
        if (low, high) != (0.0, 255.0):
            sample = sample / np.float32(255.0 / (high - low))
            if low != 0.0:
                sample = sample + np.float32(low)
        if recipe.mean is not None:
            count = recipe.channels
            mean = np.asarray(recipe.mean, dtype=np.float32)[:count]
            std = np.asarray(recipe.std or (1.0,) * count, dtype=np.float32)[:count]
            sample = (sample - mean) / std
        sample = sample.astype(dtype, copy=False)
    return np.ascontiguousarray(sample.transpose(2, 0, 1)) if recipe.layout == "nchw" else sample


def prepare_one(
    source: ImageSource, recipe: Recipe, dtype: Any = np.float32, origin: str | None = None
) -> np.ndarray:
    """One image (a path, encoded bytes or a PIL image) as one sample of the model's input."""
    name = origin or describe_source(source, 0)
    return finish(pixels_of(source, recipe, name), recipe, np.dtype(dtype), name)


def prepare(
    images: ImageSource | Sequence[ImageSource],
    recipe: Recipe,
    *,
    dtype: Any = np.float32,
    threads: int = 1,
) -> np.ndarray:
    """Images — paths, encoded bytes (JPEG, PNG, …) or PIL images, one or a list — as the
    model's input batch (images × height × width × channels, or channels first for an
    ``nchw`` recipe), prepared exactly as ``recipe`` says. ``threads`` decode in parallel
    (Pillow releases the GIL)."""
    single = isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(
        images, "getpixel"
    )
    items = [images] if single else list(images)  # type: ignore[arg-type]
    names = [describe_source(item, index) for index, item in enumerate(items)]
    kind = np.dtype(dtype)
    if threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            samples = list(
                pool.map(
                    lambda p: prepare_one(p[0], recipe, kind, p[1]), zip(items, names, strict=True)
                )
            )
    else:
        samples = [
            prepare_one(item, recipe, kind, name) for item, name in zip(items, names, strict=True)
        ]
    if not samples:
        height, width = recipe.size
        shape = (
            (0, recipe.channels, height, width)
            if recipe.layout == "nchw"
            else (0, height, width, recipe.channels)
        )
        return np.empty(shape, dtype=kind)
    return np.stack(samples)


# --- arrays given directly --------------------------------------------------------------------


def expected_bounds(recipe: Recipe) -> tuple[float, float]:
    """The lowest and highest values a prepared sample can hold."""
    low, high = recipe.value_range or (0.0, 255.0)
    if recipe.mean is None:
        return low, high
    count = len(recipe.mean)
    std = recipe.std or (1.0,) * count
    lows = [(low - m) / s for m, s in zip(recipe.mean, std, strict=False)]
    highs = [(high - m) / s for m, s in zip(recipe.mean, std, strict=False)]
    return min(lows), max(highs)


def check_array_range(
    array: np.ndarray, recipe: Recipe, origin: str, *, margin: float = 0.1
) -> None:
    """Refuse an array given directly (NPY, NPZ, JSON) whose values lie clearly outside the
    range the model's images are prepared to (more than ``margin`` of the span beyond it):
    raw 0..255 pixels fed to a -1..1 model would be answered wrong without a word."""
    if recipe.value_range is None or array.size == 0 or array.dtype.kind not in "fiu":
        return
    low, high = expected_bounds(recipe)
    slack = (high - low) * margin
    found_low, found_high = float(np.nanmin(array)), float(np.nanmax(array))
    if found_low < low - slack or found_high > high + slack:
        raise InputError(
            f"{origin}: the model takes images prepared to {low:g}..{high:g} "
            f"({recipe.describe()}), got array values {found_low:g}..{found_high:g}; "
            f"if they are raw pixels, say their range with --array-range (e.g. 0..255) "
            f"and portanet scales them as it scales image files"
        )


def parse_array_range(text: str) -> tuple[float, float]:
    """``--array-range`` text (``0..255``, ``0..1``) as ``(low, high)``."""
    low, sep, high = str(text).strip().partition("..")
    try:
        if not sep:
            raise ValueError
        bounds = float(low), float(high)
    except ValueError:
        raise InputError(f"array range: expected LOW..HIGH such as 0..255, got {text!r}") from None
    if not (np.isfinite(bounds).all() and bounds[0] < bounds[1]):
        raise InputError(f"array range: expected finite LOW < HIGH, got {text!r}")
    return bounds


def scale_array(
    array: np.ndarray, recipe: Recipe, array_range: tuple[float, float], dtype: Any, origin: str
) -> np.ndarray:
    """Arrays of raw pixels (``array_range``, e.g. 0..255, RGB, in the model's layout) mapped
    onto the 8-bit scale and prepared as image files are: channel order, range, mean/std."""
    low, high = array_range
    values = np.asarray(array, dtype=np.float32)
    found_low, found_high = float(values.min(initial=low)), float(values.max(initial=high))
    if found_low < low or found_high > high:
        raise InputError(
            f"{origin}: --array-range {low:g}..{high:g}: got values {found_low:g}..{found_high:g}"
        )
    pixels = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    if recipe.layout == "nchw":
        pixels = pixels.transpose(0, 2, 3, 1)
    kind = np.dtype(dtype)
    return (
        np.stack([finish(sample, recipe, kind, origin) for sample in pixels])
        if len(pixels)
        else np.asarray(array, dtype=kind)
    )
