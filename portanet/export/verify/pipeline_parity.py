"""Pipeline parity: the proof reaches the files users deploy.

The gate proves the ONNX graph computes what the Keras graph computes, on tensors. Here the
same image files go through two whole pipelines:

* the **author's**: the preprocessing the recipe names, done with the author's libraries —
  Pillow (``Image.open(...).convert``, ``ImageOps.fit``/``pad``, ``Image.resize``),
  ``keras.utils.load_img`` + ``img_to_array``, ``tf.io.decode_image`` + ``tf.image.resize``
  (as ``image_dataset_from_directory``), keras.applications' ``preprocess_input`` — then Keras;
* **portanet's**: :func:`portanet.images.prepare` (TF-free) with the recipe recorded in the
  ONNX file, then onnxruntime.

Per file: the largest input difference, the largest output difference and whether the top-1
decision agrees. Export side (TensorFlow, Keras).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError, ParityError
from portanet.images import Recipe, input_recipe
from portanet.schema import NAMED_RANGES

#: Images per Keras/onnxruntime call.
CHUNK = 16


def author_pixels(path: Path, recipe: Recipe) -> np.ndarray:
    """``path`` decoded, coloured and resized by the author's library (height × width ×
    channels, float32 on the 8-bit scale)."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[recipe.channels]
    height, width = recipe.size
    if recipe.library == "keras":
        import keras

        colour = {1: "grayscale", 3: "rgb", 4: "rgba"}[recipe.channels]
        picture = keras.utils.load_img(
            path,
            color_mode=colour,
            target_size=recipe.size,
            interpolation=recipe.filter if recipe.filter != "area" else "box",
            keep_aspect_ratio=recipe.resize == "crop",
        )
        return np.asarray(keras.utils.img_to_array(picture), dtype=np.float32)
    if recipe.library == "tensorflow":
        import tensorflow as tf

        image = tf.io.decode_image(
            tf.io.read_file(str(path)), channels=recipe.channels, expand_animations=False
        )
        if recipe.resize == "crop":
            import keras

            # image_dataset_from_directory(crop_to_aspect_ratio=True) calls this (public API).
            out = keras.preprocessing.image.smart_resize(
                image, recipe.size, interpolation=recipe.filter
            )
        elif recipe.resize == "pad":
            out = tf.image.resize_with_pad(image, height, width, method=recipe.filter)
        else:
            out = tf.image.resize(image, recipe.size, method=recipe.filter)
        return np.asarray(out, dtype=np.float32)
    from PIL import Image, ImageOps

    method = getattr(Image.Resampling, {"area": "BOX"}.get(recipe.filter, recipe.filter.upper()))
    picture = Image.open(path)
    if recipe.exif:
        picture = ImageOps.exif_transpose(picture)
    picture = picture.convert(mode)
    if recipe.resize == "crop":
        picture = ImageOps.fit(picture, (width, height), method)
    elif recipe.resize == "pad":
        picture = ImageOps.pad(picture, (width, height), method)
    else:
        picture = picture.resize((width, height), method)
    pixels = np.asarray(picture, dtype=np.float32)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def author_values(pixels: np.ndarray, recipe: Recipe) -> np.ndarray:
    """The author's value step: keras.applications' ``preprocess_input`` where the recipe is
    one of its modes, else ``x / (255 / (high - low)) + low`` (``x / 127.5 - 1``)."""
    for mode, fields in NAMED_RANGES.items():
        same = all(getattr(recipe, key) == value for key, value in fields.items())
        if same and (mode == "tf" or recipe.mean is not None) and recipe.channels == 3:
            from keras.applications import imagenet_utils

            return imagenet_utils.preprocess_input(pixels[None].copy(), mode=mode)[0]
    low, high = recipe.value_range or (0.0, 255.0)
    values = pixels.astype(np.float32)
    if recipe.channel_order == "bgr":
        values = values[:, :, ::-1]
    if (low, high) != (0.0, 255.0):
        values = values / np.float32(255.0 / (high - low)) + np.float32(low)
    if recipe.mean is not None:
        mean = np.asarray(recipe.mean, dtype=np.float32)
        std = np.asarray(recipe.std or (1.0,) * len(recipe.mean), dtype=np.float32)
        values = (values - mean) / std
    return values


@dataclass(frozen=True)
class FileParity:
    """One file through both pipelines."""

    file: str
    input_max_abs: float
    output_max_abs: float
    keras_top1: int
    onnx_top1: int

    @property
    def agrees(self) -> bool:
        """Whether both pipelines decide the same class."""
        return self.keras_top1 == self.onnx_top1


@dataclass
class PipelineReport:
    """Per-file results of :func:`pipeline_parity`; truthy only when every file agrees and
    every output is within ``atol + rtol * |keras|``."""

    recipe: str
    atol: float
    rtol: float
    files: list[FileParity] = field(default_factory=list)
    within: bool = True

    @property
    def max_abs(self) -> float:
        """Largest output difference over all files."""
        return max((f.output_max_abs for f in self.files), default=0.0)

    @property
    def input_max_abs(self) -> float:
        """Largest input difference over all files."""
        return max((f.input_max_abs for f in self.files), default=0.0)

    @property
    def agreement(self) -> float:
        """Fraction of files whose top-1 decision agrees."""
        return sum(f.agrees for f in self.files) / len(self.files) if self.files else 1.0

    @property
    def passed(self) -> bool:
        """Every file agrees and every output is within tolerance."""
        return self.within and self.agreement == 1.0

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "recipe": self.recipe,
            "atol": self.atol,
            "rtol": self.rtol,
            "passed": self.passed,
            "max_abs": self.max_abs,
            "input_max_abs": self.input_max_abs,
            "top1_agreement": self.agreement,
            "files": [{**f.__dict__, "agrees": f.agrees} for f in self.files],
        }


def _top1(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(len(values), -1)
    return (flat[:, 0] >= 0.5).astype(int) if flat.shape[1] == 1 else flat.argmax(axis=1)


def image_files(data: str | os.PathLike[str]) -> list[Path]:
    """The image files of a folder (sorted, recursively), or ``[]`` when ``data`` is not one."""
    from portanet.tables.images import IMAGE_SUFFIXES

    folder = Path(data)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def compare_pipelines(
    keras_model: Any,
    runtime: Any,
    files: Sequence[Path],
    *,
    atol: float = 1e-4,
    rtol: float = 0.0,
    image_range: str | None = None,
) -> PipelineReport:
    """Run ``files`` through the author's pipeline + Keras and through portanet's + ONNX."""
    from portanet.export.verify.runners import KerasRunner
    from portanet.images import value_fields

    if not files:
        raise InputError("pipeline parity: expected image files, got none")
    override = value_fields(image_range) if image_range else None
    origin = str(runtime.path or "model")
    spec, recipe = input_recipe(runtime.schema.inputs, runtime.image_recipes, override, origin)
    keras = KerasRunner(keras_model)
    report = PipelineReport(recipe.describe(), atol, rtol)
    output = runtime.output_names[0]
    for start in range(0, len(files), CHUNK):
        chunk = list(files[start : start + CHUNK])
        theirs = np.stack([author_values(author_pixels(p, recipe), recipe) for p in chunk])
        ours = runtime.prepare_images(chunk, image_range=image_range)
        ours_nhwc = ours.transpose(0, 2, 3, 1) if recipe.layout == "nchw" else ours
        expected = keras.run({keras.input_order[0]: theirs})[output]
        got = np.asarray(runtime.run({spec.name: ours})[output])
        difference = np.abs(got.astype(np.float64) - expected)
        report.within &= bool((difference <= atol + rtol * np.abs(expected)).all())
        for index, path in enumerate(chunk):
            report.files.append(
                FileParity(
                    str(path),
                    float(np.abs(ours_nhwc[index] - theirs[index]).max()),
                    float(difference[index].max()),
                    int(_top1(expected[index : index + 1])[0]),
                    int(_top1(got[index : index + 1])[0]),
                )
            )
    return report


def pipeline_parity(
    source: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    atol: float = 1e-4,
    rtol: float = 0.0,
    allow_unsafe: bool = False,
    image_range: str | None = None,
) -> PipelineReport:
    """The ``verify SOURCE ONNX --data FOLDER_OF_IMAGES`` check; raises :class:`ParityError`
    (carrying the report) when a file's decision or output differs."""
    from portanet.export.keras.load import load_keras
    from portanet.runtime import load

    files = image_files(data)
    if not files:
        raise InputError(f"{data}: expected a folder of image files, got none")
    runtime = load(onnx_path, providers="cpu")
    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    report = compare_pipelines(
        loaded.model, runtime, files, atol=atol, rtol=rtol, image_range=image_range
    )
    check(report)
    return report


def check(report: PipelineReport) -> None:
    """Raise :class:`ParityError` listing every file that differs, when the report failed."""
    if report.passed:
        return
    bad = [f for f in report.files if not f.agrees or f.output_max_abs > report.atol]
    lines = "\n".join(
        f"- {f.file}: top-1 {f.keras_top1} (author) vs {f.onnx_top1} (portanet), "
        f"max abs {f.output_max_abs:.3g}"
        for f in bad[:10]
    )
    raise ParityError(
        f"pipeline parity: {len(bad)} of {len(report.files)} files differ from the author's "
        f"pipeline ({report.recipe}); name the author's preprocessing at export with "
        f"--image-preset or --image-resize/--image-filter/--image-library:\n{lines}",
        report,
    )
