"""Encoded images (JPEG, PNG, … as the protocol's ``BYTES``) decoded server-side into the
model's image input, prepared with the recipe recorded at export (:class:`portanet.images.Recipe`).

One function, :func:`decode_images`, is the server's whole use of image preparation; it runs
in the app's decode threads (Pillow releases the GIL), never on the event loop. The pixel
arithmetic is :func:`portanet.images.prepare_one`, the code ``portanet infer`` and
``Model.predict_images`` run.
"""

from __future__ import annotations

import io
import math

import numpy as np

from portanet.errors import InputError
from portanet.images import Recipe
from portanet.schema import TensorSpec
from portanet.serve.protocol import ProtocolError

#: Largest encoded image accepted, in pixels (width × height), checked before decoding.
MAX_PIXELS = 40_000_000


def decode_images(
    blobs: np.ndarray, spec: TensorSpec, image: Recipe, *, max_elements: int, where: str
) -> np.ndarray:
    """A ``[N]`` (or ``[N, 1]``) array of encoded images as the model's ``[N, …]`` input."""
    from portanet.images.decode import pillow
    from portanet.images.prepare import prepare_one

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
            samples.append(prepare_one(bytes(blob), image, spec.numpy_dtype, f"image {index}"))
        except InputError as exc:
            raise ProtocolError(f"{where}: image {index}: {exc}") from None
    return np.stack(samples) if samples else np.empty((0, *_sample_shape(image)), np.float32)


def _sample_shape(image: Recipe) -> tuple[int, ...]:
    height, width = image.size
    if image.layout == "nchw":
        return (image.channels, height, width)
    return (height, width, image.channels)
