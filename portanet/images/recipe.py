"""How an image becomes one sample of a model's image input: the :class:`Recipe` recorded at
export, and presets for the pipelines authors actually use (numpy only).

A recipe names every step, with the semantics of the library the author used:

* ``exif``: turn the picture upright by its EXIF orientation first (Pillow's
  ``ImageOps.exif_transpose``). ``keras.utils.load_img``, ``tf.io.decode_image`` and Teachable
  Machine's snippet do not, so their presets do not either;
* colour: ``channels`` 1 (grey), 3 (RGB) or 4 (RGBA), converted as Pillow's ``Image.convert``;
* geometry (``resize``): ``stretch`` to ``size``; ``crop`` the centre to the aspect ratio of
  ``size`` then resize; ``pad`` (letterbox with black) to it then resize;
* ``filter`` (nearest, bilinear, bicubic, lanczos, area) as ``library`` does it: ``pillow``
  (``Image.resize``, crop as ``ImageOps.fit``, pad as ``ImageOps.pad``), ``keras``
  (``keras.utils.load_img``: Pillow's filters, Keras' integer crop box) or ``tensorflow``
  (``tf.image.resize`` without antialiasing, crop as ``crop_to_aspect_ratio``, pad as
  ``tf.image.resize_with_pad``; reproduced here in numpy);
* values: 8-bit pixels mapped onto ``value_range`` as ``x / (255 / (high - low)) + low``
  (``x / 127.5 - 1`` for -1..1), channels reordered (``channel_order``), then
  ``(x - mean) / std`` per channel when given; ``layout`` ``nhwc`` or ``nchw``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from portanet.errors import InputError
from portanet.schema import NAMED_RANGES, ImageSpec, parse_value_range

RESIZE_MODES = ("stretch", "crop", "pad")
FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "area")
LIBRARIES = ("pillow", "keras", "tensorflow")
#: Filters reproduced TF-free with tf.image.resize's semantics (others are refused, not guessed).
TENSORFLOW_FILTERS = ("nearest", "bilinear", "area")
_CHANNELS = {1: "grey", 3: "rgb", 4: "rgba"}


@dataclass(frozen=True)
class Recipe:
    """How an image file becomes one sample of an image input (see the module docstring)."""

    size: tuple[int, int]
    channels: int = 3
    resize: str = "stretch"
    filter: str = "bilinear"
    library: str = "pillow"
    exif: bool = True
    value_range: tuple[float, float] | None = None
    channel_order: str = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "nhwc"
    preset: str | None = None
    #: How the geometry was decided (a preset, flags, or "not recorded": then say so).
    source: str = ""
    #: How the value range was decided (a Rescaling layer, keras.applications, a flag).
    range_source: str = ""

    def __post_init__(self) -> None:
        problems = []
        if len(self.size) != 2 or min(self.size) < 1:
            problems.append(f"size: expected (height, width) >= 1, got {self.size}")
        if self.channels not in _CHANNELS:
            problems.append(f"channels: expected 1, 3 or 4, got {self.channels}")
        for name, allowed in (
            ("resize", RESIZE_MODES),
            ("filter", FILTERS),
            ("library", LIBRARIES),
            ("channel_order", ("rgb", "bgr")),
            ("layout", ("nhwc", "nchw")),
        ):
            if getattr(self, name) not in allowed:
                problems.append(
                    f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.library == "tensorflow" and self.filter not in TENSORFLOW_FILTERS:
            problems.append(
                f"filter: tf.image.resize's {self.filter} is not reproduced TF-free (expected one "
                f"of {', '.join(TENSORFLOW_FILTERS)} with --image-library tensorflow)"
            )
        if self.library == "keras" and self.resize == "pad":
            problems.append("resize: keras.utils.load_img does not pad (expected stretch or crop)")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            problems.append(f"value_range: expected LOW < HIGH, got {self.value_range}")
        if problems:
            raise InputError("image recipe: " + "; ".join(problems))

    def replace(self, **fields: Any) -> Recipe:
        """A copy with ``fields`` changed (checked again)."""
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the value of one input in ``portanet.preprocessing``)."""
        data = dataclasses.asdict(self)
        data["size"] = list(self.size)
        for key in ("value_range", "mean", "std"):
            data[key] = list(data[key]) if data[key] is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict` (unknown keys are refused: a newer recipe than this
        portanet knows must not be applied half-way)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(
                f"image recipe: this portanet does not know the steps {sorted(unknown)}; "
                f"expected only {sorted(known)} (upgrade portanet)"
            )
        fields = dict(data)
        fields["size"] = (int(data["size"][0]), int(data["size"][1]))
        for key in ("value_range", "mean", "std"):
            if fields.get(key) is not None:
                fields[key] = tuple(float(v) for v in fields[key])
        return cls(**fields)

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_image_spec(cls, spec: ImageSpec) -> Recipe:
        """The recipe of a file exported before recipes were recorded: what ``infer`` has
        always done with it (EXIF applied, Pillow bilinear stretch)."""
        return cls(
            size=spec.size,
            channels=spec.channels,
            value_range=spec.value_range,
            channel_order=spec.channel_order,
            mean=spec.mean,
            std=spec.std,
            layout=spec.layout,
            source="not recorded (a file from before recipes): Pillow bilinear stretch",
            range_source=spec.source,
        )

    def image_spec(self) -> ImageSpec:
        """The older :class:`~portanet.schema.ImageSpec` view (kept in the schema for readers
        that predate recipes)."""
        return ImageSpec(
            size=self.size,
            channels=self.channels,
            value_range=self.value_range,
            channel_order=self.channel_order,
            mean=self.mean,
            std=self.std,
            layout=self.layout,
            source=self.range_source,
        )

    def describe(self) -> str:
        """One line for ``inspect``."""
        colour = {1: "grey", 3: self.channel_order, 4: self.channel_order + "a"}[self.channels]
        steps = [f"{self.size[0]}x{self.size[1]} {colour}"]
        how = {"stretch": "stretched", "crop": "centre-cropped", "pad": "padded"}[self.resize]
        steps.append(f"{how} with {self.library}'s {self.filter}")
        steps.append("EXIF orientation applied" if self.exif else "EXIF orientation ignored")
        if self.value_range is None:
            steps.append("value range unknown (give --image-range)")
        else:
            low, high = (_number(v) for v in self.value_range)
            span = f"values {low}..{high}"
            if self.mean is not None:
                span += f", then (x - {list(self.mean)}) / {list(self.std or ())}"
            if self.range_source:
                span += f" ({self.range_source})"
            steps.append(span)
        if self.layout == "nchw":
            steps.append("channels first")
        head = f"preset {self.preset}: " if self.preset else ""
        tail = f"; geometry {self.source}" if self.source and not self.preset else ""
        return head + ", ".join(steps) + tail


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- presets ---------------------------------------------------------------------------------

_KERAS_LOAD_IMG = {"resize": "stretch", "filter": "nearest", "library": "keras", "exif": False}
_DATASET = {"resize": "stretch", "filter": "bilinear", "library": "tensorflow", "exif": False}

#: Preset name → (recipe fields, what it stands for). Value fields are fixed only where the
#: convention fixes them; otherwise they come from the model (Rescaling, keras.applications)
#: or ``--image-range``.
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "teachable-machine": (
        {
            "resize": "crop",
            "filter": "lanczos",
            "library": "pillow",
            "exif": False,
            "value_range": (-1.0, 1.0),
            "channel_order": "rgb",
        },
        "Teachable Machine's Keras snippet: ImageOps.fit(image, size, LANCZOS), x / 127.5 - 1",
    ),
    "keras-load-img": (
        dict(_KERAS_LOAD_IMG),
        "keras.utils.load_img(path, target_size=size) (nearest), values as the model or "
        "--image-range says",
    ),
    "keras-load-img-crop": (
        {**_KERAS_LOAD_IMG, "resize": "crop"},
        "keras.utils.load_img(..., keep_aspect_ratio=True)",
    ),
    **{
        f"keras-load-img-{mode}": (
            {**_KERAS_LOAD_IMG, **NAMED_RANGES[mode]},
            f"keras.utils.load_img then keras.applications preprocess_input (mode {mode!r})",
        )
        for mode in ("tf", "torch", "caffe")
    },
    "image-dataset-from-directory": (
        dict(_DATASET),
        "keras.utils.image_dataset_from_directory (tf.image.resize bilinear, no antialiasing)",
    ),
    "image-dataset-from-directory-crop": (
        {**_DATASET, "resize": "crop"},
        "image_dataset_from_directory(..., crop_to_aspect_ratio=True)",
    ),
    "image-dataset-from-directory-pad": (
        {**_DATASET, "resize": "pad"},
        "image_dataset_from_directory(..., pad_to_aspect_ratio=True)",
    ),
}


def preset_fields(name: str) -> dict[str, Any]:
    """The recipe fields a preset fixes; an unknown name lists the known ones."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InputError(f"image preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    return {**PRESETS[key][0], "preset": key}


def value_fields(text: str) -> dict[str, Any]:
    """``--image-range`` text (``-1..1``, ``0..255``, ``tf``, ``torch``, ``caffe``) as fields."""
    try:
        return parse_value_range(text)
    except ValueError as exc:
        raise InputError(f"image range: {exc} (--image-range)") from None
