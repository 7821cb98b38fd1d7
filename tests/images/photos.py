"""Real photographs for the image tests, without network: scikit-learn's bundled sample
photos (china.jpg, flower.jpg), crops of them and digits as PNG, written with Pillow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's two bundled photographs (427 × 640 RGB, uint8)."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def write_photo_files(folder: Path) -> list[Path]:
    """The two photos, three crops of each (odd sizes and aspect ratios, portrait included)
    as JPEG and PNG, and four digits as 8-bit grey PNG (64 × 64): 16 real files."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, photo in enumerate(sample_photos()):
        picture = Image.fromarray(photo)
        for number, box in enumerate([(0, 0, 640, 427), (13, 7, 300, 251), (100, 50, 217, 419)]):
            crop = picture.crop(box)
            for suffix, options in ((".jpg", {"quality": 90}), (".png", {})):
                path = folder / f"photo{index}_crop{number}{suffix}"
                crop.save(path, **options)
                files.append(path)
    digits = load_digits()
    for index in range(4):
        pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
        path = folder / f"digit{index}.png"
        Image.fromarray(np.kron(pixels, np.ones((8, 8), np.uint8))).save(path)
        files.append(path)
    return files


def write_png48(path: Path, rgb16: np.ndarray) -> Path:
    """A 48-bit RGB PNG (16 bits a channel) written chunk by chunk (Pillow cannot write one)."""
    height, width, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path
