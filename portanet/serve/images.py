"""Encoded images (JPEG, PNG, … as the protocol's ``BYTES``) decoded server-side into the
model's image input, prepared as recorded at export (:class:`portanet.schema.ImageSpec`).

One function, :func:`decode_images`, is the server's whole use of image preparation; it runs
in the app's decode threads (Pillow releases the GIL), never on the event loop. The pixel
arithmetic is ``portanet.tables.images.decode``, the code ``portanet infer`` runs on files.
"""

from __future__ import annotations

import io
import math

import numpy as np

from portanet.errors import InputError
from portanet.schema import ImageSpec, TensorSpec
from portanet.serve.protocol import ProtocolError

#: Largest encoded image accepted, in pixels (width × height), checked before decoding.
MAX_PIXELS = 40_000_000


def decode_images(
    blobs: np.ndarray, spec: TensorSpec, image: ImageSpec, *, max_elements: int, where: str
) -> np.ndarray:
    """A ``[N]`` (or ``[N, 1]``) array of encoded images as the model's ``[N, …]`` input."""
    from portanet.tables.images import decode, pillow

    flat = blobs.reshape(-1)
    if blobs.ndim not in (1, 2) or (blobs.ndim == 2 and blobs.shape[1] != 1):
        raise ProtocolError(
            f"{where}: expected encoded images with shape [N] or [N, 1], got {list(blobs.shape)}"
        )
    per_image = math.prod(image.size) * image.channels
    if flat.size * per_image > max_elements:
        raise ProtocolError(
            f"{where}: expected at most {max_elements:,} tensor elements (raise "
            f"--max-elements), got {flat.size} images of {per_image:,}",
            413,
        )
    Image = pillow()
    samples = []
    for index, blob in enumerate(flat):
        try:
            with Image.open(io.BytesIO(blob)) as probe:  # reads the header only
                width, height = probe.size
        except Exception as exc:  # Pillow raises several types for bad bytes
            raise ProtocolError(
                f"{where}: image {index}: expected JPEG/PNG/… bytes Pillow can read, got "
                f"{len(blob)} bytes it cannot ({exc})"
            ) from None
        if width * height > MAX_PIXELS:
            raise ProtocolError(
                f"{where}: image {index}: expected at most {MAX_PIXELS:,} pixels, got "
                f"{width}×{height}",
                413,
            )
        try:
            samples.append(decode(io.BytesIO(blob), image, spec.numpy_dtype))  # type: ignore[arg-type]
        except InputError as exc:
            raise ProtocolError(f"{where}: image {index}: {exc}") from None
    return np.stack(samples) if samples else np.empty((0, *_sample_shape(image)), np.float32)


def _sample_shape(image: ImageSpec) -> tuple[int, ...]:
    height, width = image.size
    if image.layout == "nchw":
        return (image.channels, height, width)
    return (height, width, image.channels)
