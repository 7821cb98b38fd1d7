"""Decoding: a path, bytes or a PIL image as pixels in the recipe's colour mode, every Pillow
pixel format scaled by its bit depth onto the 8-bit scale (0..255), never clipped.

* 8-bit modes (1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, LAB, HSV) go through Pillow's own
  ``Image.convert``, exactly as an author's ``Image.open(...).convert("RGB")`` does, and stay
  8-bit images (so Pillow resizes them exactly as the author's code did);
* deeper grey modes become float planes: ``I;16*`` as ``v / 257``; ``I`` by the bits per
  sample its file records (32 when it says nothing), ``F`` read as 0..1 (``v * 255``) and
  refused outside it. 48-bit RGB files are read by Pillow as 8-bit RGB (their high bytes).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError

#: What :func:`open_image` accepts: a path, encoded bytes, or a PIL image.
ImageSource = Any
_TARGET_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def pillow() -> Any:
    """The ``PIL.Image`` module, or an :class:`InputError` naming the extra to install."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError(
            "reading images needs Pillow, which is not installed: expected "
            "`pip install 'portanet[images]'`"
        ) from exc
    return Image


def describe_source(source: ImageSource, index: int) -> str:
    """A name for messages: the path, or ``image #i (bytes)``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    kind = "bytes" if isinstance(source, (bytes, bytearray, memoryview)) else type(source).__name__
    return f"image #{index} ({kind})"


def open_image(source: ImageSource, origin: str) -> Any:
    """A loaded PIL image from a path, encoded bytes (JPEG, PNG, …) or a PIL image."""
    Image = pillow()
    from PIL import UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            picture = Image.open(io.BytesIO(bytes(source)))
        elif isinstance(source, (str, os.PathLike)):
            if not Path(source).is_file():
                raise InputError(f"{origin}: no such file")
            with open(source, "rb") as handle:
                picture = Image.open(io.BytesIO(handle.read()))
        else:
            raise InputError(
                f"{origin}: expected a path, encoded image bytes or a PIL image, "
                f"got {type(source).__name__}"
            )
        picture.load()
        if picture.mode == "I":  # kept in info: tags do not survive exif_transpose's copy
            picture.info["portanet.sample"] = _bits_of_int_image(picture)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"{origin}: expected an image file Pillow can read, got: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{origin}: expected a readable image, Pillow says: {exc}") from exc
    return picture


def upright(picture: Any, exif: bool) -> Any:
    """The picture turned by its EXIF orientation when ``exif`` (else as stored)."""
    if not exif:
        return picture
    from PIL import ImageOps

    return ImageOps.exif_transpose(picture)


def _bits_of_int_image(picture: Any) -> tuple[int, bool]:
    """Bits per sample of a mode ``I`` image and whether it is signed (TIFF tags 258/339)."""
    tags = getattr(picture, "tag_v2", None) or {}
    bits = tags.get(258)
    bits = int(bits[0] if isinstance(bits, tuple) else bits) if bits else 32
    fmt = tags.get(339)
    fmt = int(fmt[0] if isinstance(fmt, tuple) else fmt) if fmt else 1
    return bits, fmt == 2


def deep_planes(picture: Any, origin: str) -> np.ndarray | None:
    """A deep grey picture (``I;16``, ``I``, ``F``) as float32 height × width on the 8-bit
    scale, or ``None`` for pictures Pillow's 8-bit conversions read exactly."""
    mode = picture.mode
    if mode in _SIXTEEN_BIT:
        return np.asarray(picture).astype(np.float32) / np.float32(257.0)
    if mode == "I":
        bits, signed = picture.info.get("portanet.sample") or _bits_of_int_image(picture)
        values = np.asarray(picture).astype(np.float64)
        top = float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)
        if values.size and (values.min() < 0 or values.max() > top):
            raise InputError(
                f"{origin}: a {bits}-bit integer image: expected values 0..{int(top)}, got "
                f"{int(values.min())}..{int(values.max())}"
            )
        return (values * (255.0 / top)).astype(np.float32)
    if mode == "F":
        values = np.asarray(picture).astype(np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{origin}: a float image: expected finite values, got NaN or Inf")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise InputError(
                f"{origin}: a float image is read as 0..1 (0 black, 1 white): got values "
                f"{values.min():g}..{values.max():g}; save it as 0..1 floats or as 8/16-bit "
                f"integers"
            )
        return values * np.float32(255.0)
    return None


def in_colour(picture: Any, channels: int, origin: str) -> Any:
    """The picture in ``channels`` (1, 3, 4): an 8-bit PIL image (Pillow's ``convert``), or for
    deep pictures a float32 array height × width × channels on the 8-bit scale."""
    grey = deep_planes(picture, origin)
    if grey is None:
        target = _TARGET_MODES[channels]
        return picture if picture.mode == target else picture.convert(target)
    planes = [grey] * min(channels, 3)
    if channels == 4:
        planes.append(np.full_like(grey, 255.0))
    return np.stack(planes, axis=-1)


_JPEG_MAGIC = b"\xff\xd8\xff"
#: EXIF orientation → the Pillow transpose that turns the picture upright (as exif_transpose).
_ORIENTATION = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def encoded_bytes(source: ImageSource) -> bytes | None:
    """The encoded bytes of a path or bytes source (``None`` for a PIL image)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return Path(source).read_bytes()
    return None


def tensorflow_jpeg(data: bytes, channels: int, exif: bool, origin: str) -> np.ndarray | None:
    """A JPEG decoded as ``tf.io.decode_image`` decodes it (libjpeg-turbo, fast integer DCT,
    fancy upsampling; grey by libjpeg's own conversion) — bit for bit, through simplejpeg —
    or ``None`` when ``data`` is not a JPEG. Pillow cannot: it decodes with the accurate DCT,
    up to 6 levels away."""
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:
        import simplejpeg
    except ImportError as exc:
        raise InputError(
            f"{origin}: decoding a JPEG as TensorFlow does needs simplejpeg, which is not "
            f"installed: expected `pip install 'portanet[images]'`"
        ) from exc
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if channels == 1 else "RGB", fastdct=True, fastupsample=False
        )
    except ValueError as exc:
        raise InputError(f"{origin}: expected a JPEG libjpeg-turbo can read, got: {exc}") from exc
    if channels == 4:
        pixels = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if exif:
        Image = pillow()
        orientation = Image.open(io.BytesIO(data)).getexif().get(0x0112)
        if orientation in _ORIENTATION:
            method = getattr(Image.Transpose, _ORIENTATION[orientation])
            planes = [
                Image.fromarray(np.ascontiguousarray(pixels[:, :, c])).transpose(method)
                for c in range(pixels.shape[2])
            ]
            pixels = np.stack([np.asarray(p) for p in planes], axis=-1)
    return pixels
