"""Image files (JPEG, PNG, WebP, …) as samples of a model's image input, decoded with Pillow.

Each image is turned upright (EXIF orientation), converted to the channels the model takes,
resized to its size with bilinear filtering, and its 8-bit values mapped onto the value range
recorded at export (:class:`portanet.schema.ImageSpec`), channels reordered (BGR) and laid out
channels-first where the graph wants it. Pillow lives in the ``images`` extra.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.schema import ImageSpec, TensorSpec
from portanet.tables.arrow import string_array
from portanet.tables.types import Batch, slices

#: Suffixes read as images (what Pillow decodes; the issue's JPEG/PNG/WebP and a few more).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: Pillow modes for the channel counts an image input may have.
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_GLOB_CHARACTERS = set("*?[")


def pillow() -> Any:
    """The ``PIL.Image`` module, or an :class:`InputError` naming the extra to install."""
    try:
        from PIL import Image, ImageOps  # noqa: F401
    except ImportError as exc:
        raise InputError(
            "reading images needs Pillow, which is not installed: expected "
            "`pip install 'portanet[images]'`"
        ) from exc
    return Image


def is_image_source(sources: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``sources`` name images: a folder, a glob pattern or image files."""
    for source in sources:
        text = str(source)
        if text == "-":
            return False
        path = Path(text)
        if path.is_dir() or _GLOB_CHARACTERS & set(text):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return False
    return bool(sources)


def image_paths(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Every image file named by ``sources`` with the name written in the output: a folder's
    images (recursively, sorted; names relative to the folder), a glob's matches (sorted) and
    files as given. A source that names nothing is an error."""
    found: list[tuple[Path, str]] = []
    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise InputError(f"{path}: expected image files ({kinds}) in the folder, got none")
            found.extend((p, p.relative_to(path).as_posix()) for p in files)
        elif _GLOB_CHARACTERS & set(text) and not path.exists():
            matches = sorted(
                Path(m)
                for m in glob.glob(text, recursive=True)
                if Path(m).suffix.lower() in IMAGE_SUFFIXES and Path(m).is_file()
            )
            if not matches:
                raise InputError(f"{text}: expected the pattern to match image files, got none")
            found.extend((p, str(p)) for p in matches)
        else:
            if not path.is_file():
                raise InputError(f"{path}: no such file")
            found.append((path, text))
    return found


def image_input(
    specs: Sequence[TensorSpec],
    images: dict[str, ImageSpec],
    override: dict[str, Any] | None,
    origin: str,
) -> tuple[TensorSpec, ImageSpec]:
    """The model's image input and how to prepare images for it: what was recorded at export,
    with ``override`` fields (``value_range``, ``channel_order``, ``mean``, ``std``) on top.
    Without a recorded or given value range, images are refused: guessing it would give
    answers that look right and are not."""
    candidates = [s for s in specs if s.rank == 4]
    if len(specs) != 1 or not candidates:
        raise InputError(
            f"{origin}: images need a model with one image input (rank 4), got "
            f"inputs {[(s.name, s.shape) for s in specs]}"
        )
    spec = candidates[0]
    recorded = images.get(spec.name)
    if recorded is None:
        layout = "nchw" if spec.shape[1] in (1, 3, 4) and spec.shape[3] not in (1, 3, 4) else "nhwc"
        dims = spec.shape[2:4] if layout == "nchw" else spec.shape[1:3]
        channels = spec.shape[1] if layout == "nchw" else spec.shape[3]
        if not all(isinstance(d, int) for d in (*dims, channels)):
            raise InputError(
                f"{origin}: input {spec.name!r} {spec.shape}: expected a fixed "
                f"image size and channel count to resize images to, got dynamic "
                f"dimensions and no image size recorded at export"
            )
        recorded = ImageSpec(
            (int(dims[0]), int(dims[1])),
            int(channels),
            layout=layout,
            source="shape of the ONNX input",
        )
    fields = {k: v for k, v in (override or {}).items() if v is not None}
    image = ImageSpec(
        **{**recorded.__dict__, **fields, **({"source": "given at inference"} if fields else {})}
    )
    if image.value_range is None:
        raise InputError(
            f"{origin}: input {spec.name!r}: expected the pixel value range the "
            f"model was trained on (recorded at export, or given as an image "
            f"range such as 0..1, -1..1 or 0..255 with --image-range), got none"
        )
    if image.channels not in _MODES:
        raise InputError(
            f"{origin}: input {spec.name!r}: expected 1, 3 or 4 image channels, "
            f"got {image.channels}"
        )
    return spec, image


def decode(path: Path, image: ImageSpec, dtype: np.dtype = np.dtype(np.float32)) -> np.ndarray:
    """One image file as a sample of the model's input (height × width × channels, or
    channels first for an ``nchw`` layout), prepared as :class:`ImageSpec` says."""
    Image = pillow()
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened).convert(_MODES[image.channels])
            height, width = image.size
            if picture.size != (width, height):
                picture = picture.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: expected an image file Pillow can read, got: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path}: expected a readable image, Pillow says: {exc}") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if image.channel_order == "bgr" and image.channels >= 3:
        pixels = np.concatenate([pixels[:, :, 2::-1], pixels[:, :, 3:]], axis=2)
    low, high = image.value_range or (0.0, 255.0)
    if dtype.kind in "iu":
        if (low, high) != (0.0, 255.0) or image.mean is not None:
            raise InputError(
                f"{path}: an integer image input takes raw pixels (0..255), got "
                f"the value range {low}..{high}"
            )
        sample = pixels.astype(dtype)
    else:
        sample = pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        if image.mean is not None:
            mean = np.asarray(image.mean, dtype=np.float32)[: image.channels]
            std = np.asarray(image.std or (1.0,) * image.channels, dtype=np.float32)
            sample = (sample - mean) / std[: image.channels]
        sample = sample.astype(dtype, copy=False)
    return np.ascontiguousarray(sample.transpose(2, 0, 1)) if image.layout == "nchw" else sample


def image_batches(
    files: Sequence[tuple[Path, str]],
    spec: TensorSpec,
    image: ImageSpec,
    batch_rows: int,
    threads: int = 4,
) -> Iterator[Batch]:
    """Batches of decoded images for ``spec`` with a ``file`` column (the names of
    :func:`image_paths`); images are decoded by ``threads`` threads (Pillow releases the GIL)."""
    pillow()
    dtype = spec.numpy_dtype
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start, stop in slices(len(files), batch_rows):
            chunk = files[start:stop]
            samples = list(pool.map(lambda item: decode(item[0], image, dtype), chunk))
            array = np.stack(samples)
            names = string_array([name for _, name in chunk])
            yield Batch(array, {"file": names}, start, {spec.name: array})
