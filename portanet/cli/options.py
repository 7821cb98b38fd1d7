"""Options shared by several commands: one word, one meaning, everywhere (Annotated aliases)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

#: onnxruntime execution providers by their short names (``portanet.load`` takes the same).
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")


def split_names(values: list[str] | None) -> list[str]:
    """Values of a repeatable option that also takes comma-separated lists, flattened."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def providers_arg(values: list[str] | None) -> str | list[str]:
    """What :func:`portanet.load` takes as ``providers`` for a ``--provider`` option's value."""
    names = split_names(values)
    return "auto" if names in ([], ["auto"]) else names


def _providers(values: list[str] | None) -> list[str]:
    names = split_names(values) or ["auto"]
    for name in names:
        if name.lower() not in PROVIDER_CHOICES and not name.endswith("ExecutionProvider"):
            raise typer.BadParameter(
                f"expected one of {', '.join(PROVIDER_CHOICES)} or an "
                f"onnxruntime provider name, got {name!r}"
            )
    if "auto" in names and len(names) > 1:
        raise typer.BadParameter(
            f"'auto' picks the providers itself; expected it alone, got {names}"
        )
    return names


class ChannelOrder(str, Enum):
    """Channel order of an image input."""

    rgb = "rgb"
    bgr = "bgr"


class StdinFormat(str, Enum):
    """How ``-`` (standard input) is read."""

    csv = "csv"
    jsonl = "jsonl"


Provider = Annotated[
    list[str] | None,
    typer.Option(
        "--provider",
        metavar="auto|cpu|cuda|tensorrt",
        callback=_providers,
        help="Execution provider(s) in priority order: auto, cpu, cuda, tensorrt or an onnxruntime "
        "provider name (repeat or comma-separate).",
    ),
]
RequireProvider = Annotated[
    bool,
    typer.Option("--require-provider", help="Fail unless the asked provider is really active."),
]
Threads = Annotated[
    int | None,
    typer.Option(min=1, help="onnxruntime threads (default: the CPUs this process may use)."),
]
AllowNan = Annotated[
    bool,
    typer.Option("--allow-nan", help="Pass NaN/Inf/empty values to the model instead of refusing."),
]
Sha256 = Annotated[str | None, typer.Option(help="Refuse the model unless its sha256 is this.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
AllowUnsafe = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe", help="Load Lambda/custom layers (runs the file's code: trust it!)."
    ),
]
Atol = Annotated[float, typer.Option(help="Absolute tolerance.")]
Rtol = Annotated[float, typer.Option(help="Relative tolerance.")]
Layerwise = Annotated[
    bool,
    typer.Option(
        "--layerwise",
        help="Also compare every Keras layer with its ONNX tensor (automatic when "
        "the outputs differ).",
    ),
]
GateData = Annotated[
    Path | None, typer.Option(help="Rows/arrays for the gate (CSV, Parquet, JSONL, NPY, NPZ).")
]
OnnxModel = Annotated[
    Path, typer.Argument(metavar="MODEL", help="ONNX model file.", show_default=False)
]
ImageRange = Annotated[
    str | None,
    typer.Option(
        "--image-range",
        metavar="LOW..HIGH",
        help="Pixel values the model takes: -1..1, 0..1, 0..255, or keras.applications' tf, torch, "
        "caffe (default: what export detected from the model, or was told).",
    ),
]
ChannelOrderOption = Annotated[
    ChannelOrder | None,
    typer.Option(
        "--channel-order", help="Channel order of the image input (default: as recorded; rgb)."
    ),
]


def choice_value(value: Enum | None) -> str | None:
    """The string an optional enum option stands for (``None`` when not given)."""
    return None if value is None else str(value.value)


class ImageResize(str, Enum):
    """How an image is brought to the input's size."""

    stretch = "stretch"
    crop = "crop"
    pad = "pad"


class ImageFilter(str, Enum):
    """Resampling filter."""

    nearest = "nearest"
    bilinear = "bilinear"
    bicubic = "bicubic"
    lanczos = "lanczos"
    area = "area"


class ImageLibrary(str, Enum):
    """Whose semantics the filter and the crop follow."""

    pillow = "pillow"
    keras = "keras"
    tensorflow = "tensorflow"


class ImageExif(str, Enum):
    """Whether EXIF orientation turns the picture upright first."""

    apply = "apply"
    ignore = "ignore"


ImagePreset = Annotated[
    str | None,
    typer.Option(
        "--image-preset",
        metavar="NAME",
        help="How the author prepared images: teachable-machine, keras-load-img[-crop|-tf|-torch|"
        "-caffe], image-dataset-from-directory[-crop|-pad] (see docs/images.md).",
    ),
]
ImageResizeOption = Annotated[
    ImageResize | None,
    typer.Option("--image-resize", help="stretch, centre-crop or pad images to the input size."),
]
ImageFilterOption = Annotated[
    ImageFilter | None, typer.Option("--image-filter", help="Resampling filter.")
]
ImageLibraryOption = Annotated[
    ImageLibrary | None,
    typer.Option(
        "--image-library",
        help="Whose filter/crop semantics: pillow, keras (load_img) or tensorflow "
        "(tf.image.resize, no antialiasing).",
    ),
]
ImageExifOption = Annotated[
    ImageExif | None,
    typer.Option(
        "--image-exif", help="Apply or ignore EXIF orientation (presets: as their library)."
    ),
]
