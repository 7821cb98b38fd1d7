"""Real photographs with no network: crops, scales and flips of the two photos scikit-learn
ships (``load_sample_images``), prepared the way Teachable Machine's snippet does (centre of a
square crop resized to 224×224, pixels / 127.5 − 1).

Evaluation and calibration sets come from different seeds and are checked to share no crop.
"""

from __future__ import annotations

import numpy as np

SIZE = 224


def _crop_boxes(count: int, seed: int, shapes: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """``count`` distinct (photo, top, left, side, flip) boxes, seeded."""
    rng = np.random.default_rng(seed)
    boxes: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(boxes) < count:
        photo = len(boxes) % len(shapes)
        height, width = shapes[photo]
        side = int(rng.integers(96, min(height, width) + 1))
        box = (
            photo,
            int(rng.integers(0, height - side + 1)),
            int(rng.integers(0, width - side + 1)),
            side,
            int(rng.random() < 0.5),
        )
        if box not in seen:
            seen.add(box)
            boxes.append(box)
    return boxes


def photo_crops(count: int, seed: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """``count`` distinct 224×224 RGB crops (float32, −1..1, channels-last) and their boxes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    boxes = _crop_boxes(count, seed, [p.shape[:2] for p in photos])
    out = np.empty((count, SIZE, SIZE, 3), dtype=np.float32)
    for i, (photo, top, left, side, flip) in enumerate(boxes):
        crop = Image.fromarray(photos[photo][top : top + side, left : left + side])
        crop = crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop, dtype=np.float32) / 127.5 - 1.0
    return out, boxes


def evaluation_and_calibration(
    evaluation: int = 240, calibration: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint evaluation and calibration crops (no box in both)."""
    held, held_boxes = photo_crops(evaluation, seed=101)
    calib, calib_boxes = photo_crops(calibration, seed=202)
    shared = set(held_boxes) & set(calib_boxes)
    if shared:
        raise AssertionError(f"evaluation and calibration share crops {sorted(shared)[:3]}")
    return held, calib
