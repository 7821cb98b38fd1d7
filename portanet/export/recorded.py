"""What the deployment side needs to know about a model's inputs and outputs, decided at export
and recorded in the schema: class names (``labels``), how image files become samples of an image
input (:class:`~portanet.schema.ImageSpec`) and the vocabulary size of integer-id inputs.

Detected where the model says it, never guessed:

* a ``Rescaling`` layer reading the input (by 1/255 or 1/127.5): raw pixels, ``0..255``;
* the input read directly by one of keras.applications' networks, whose own
  ``preprocess_input`` is known: MobileNet, MobileNetV2 (Teachable Machine's image models),
  Xception, Inception, ResNetV2, NASNet take ``-1..1`` ("tf" mode); ResNet and VGG take BGR
  with the ImageNet mean subtracted ("caffe"); DenseNet takes ImageNet mean/std ("torch");
* an ``Embedding`` reading the input: ids in ``[0, input_dim)``.

Anything else is left unrecorded unless given (``image_range``), and ``infer`` then asks for it.
Export side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from portanet.errors import InputError
from portanet.export.verify.hints import source_input
from portanet.schema import NAMED_RANGES, ImageSpec, TensorSpec, parse_value_range

#: keras.applications networks by layer names only they have, and their preprocess_input mode.
APPLICATIONS: tuple[tuple[str, frozenset[str], frozenset[str], str], ...] = (
    ("MobileNet", frozenset({"conv_dw_1", "conv_pw_1"}), frozenset(), "tf"),
    ("MobileNetV2", frozenset({"Conv1", "expanded_conv_project"}), frozenset(), "tf"),
    ("Xception", frozenset({"block1_conv1_bn", "block14_sepconv2"}), frozenset(), "tf"),
    ("InceptionV3", frozenset({"mixed0", "mixed10"}), frozenset(), "tf"),
    ("InceptionResNetV2", frozenset({"mixed_5b", "conv_7b"}), frozenset(), "tf"),
    ("NASNet", frozenset({"stem_conv1"}), frozenset(), "tf"),
    ("ResNetV2", frozenset({"conv1_conv", "post_bn"}), frozenset(), "tf"),
    ("ResNet", frozenset({"conv1_conv", "conv2_block1_1_conv"}), frozenset({"post_bn"}), "caffe"),
    ("VGG", frozenset({"block1_conv1", "block5_conv3"}), frozenset({"block1_conv1_bn"}), "caffe"),
    ("DenseNet", frozenset({"conv1/conv", "conv2_block1_0_bn"}), frozenset(), "torch"),
)


def read_labels(value: str | Path, classes: int | None = None) -> tuple[str, ...]:
    """Class names from a file — Teachable Machine's ``labels.txt`` (``0 Cat`` a line), one
    name a line, or a comma-separated list — or from a comma-separated string. ``classes``,
    when known, is the count expected."""
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{path}: expected a UTF-8 text file of class names, got: {exc}"
            ) from exc
        origin = str(path)
    elif "," in str(value):
        text, origin = str(value), "labels"
    else:
        raise InputError(
            f"{value}: expected a labels file (or a comma-separated list of "
            f"names), got no such file"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and "," in lines[0]:
        names = [n.strip() for n in lines[0].split(",")]
    else:
        numbered = [re.match(r"^(\d+)\s+(.+)$", line) for line in lines]
        if (
            lines
            and all(numbered)
            and [int(m.group(1)) for m in numbered if m] == list(range(len(lines)))
        ):
            names = [m.group(2).strip() for m in numbered if m]  # Teachable Machine
        else:
            names = lines
    if not names or any(not n for n in names):
        raise InputError(f"{origin}: expected one non-empty class name per class, got {names}")
    if len(set(names)) != len(names):
        raise InputError(f"{origin}: expected distinct class names, got {names}")
    if classes is not None and len(names) != classes:
        raise InputError(
            f"{origin}: expected {classes} class names (the model's classes), "
            f"got {len(names)}: {names}"
        )
    return tuple(names)


def parse_image_size(text: str) -> tuple[int, int]:
    """``"224"`` or ``"224x224"`` (height x width) as ``(height, width)``."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise InputError(
            f"image size: expected HEIGHTxWIDTH such as 224x224 (or one number), got {text!r}"
        )
    return size[0], size[1]


def first_readers(trace: Any, names: Sequence[str]) -> dict[str, Any]:
    """For each model input, the first layer call (not a container) that reads it."""
    found: dict[str, Any] = {}
    for call in getattr(trace, "calls", None) or []:
        if call.container:
            continue
        for tensor in call.inputs[:1]:
            name = source_input(tensor)
            if name is not None and name in names and name not in found:
                found[name] = call
    return found


def _application(model: Any, path: str) -> tuple[str, str] | None:
    """The keras.applications network (name, preprocessing mode) whose layer ``path`` is."""
    from portanet.export.convert.layertrace import is_container, walk_layers

    containers = {p: layer for p, layer in walk_layers(model) if is_container(layer)}
    parts = path.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        container = containers.get("/".join(parts[:depth]))
        if container is None:
            continue
        names = {layer.name for _, layer in walk_layers(container)}
        for app, needed, absent, mode in APPLICATIONS:
            if needed <= names and not absent & names:
                return app, mode
    return None


def vocabulary(trace: Any, specs: Sequence[TensorSpec]) -> dict[str, int]:
    """Input name → vocabulary size, for inputs read by an ``Embedding``."""
    sizes: dict[str, int] = {}
    for name, call in first_readers(trace, [s.name for s in specs]).items():
        size = getattr(call.layer, "input_dim", None)
        if call.class_name == "Embedding" and size:
            sizes[name] = int(size)
    for call in getattr(trace, "calls", None) or []:  # an Embedding that is not the first reader
        if call.class_name == "Embedding" and call.inputs:
            reader = source_input(call.inputs[0])
            if reader in [s.name for s in specs] and reader not in sizes:
                sizes[str(reader)] = int(call.layer.input_dim)
    return sizes


def image_specs(
    model: Any,
    trace: Any,
    specs: Sequence[TensorSpec],
    nchw: Sequence[str],
    *,
    image_size: tuple[int, int] | None = None,
    image_range: str | None = None,
    channel_order: str | None = None,
) -> dict[str, ImageSpec]:
    """How image files become samples of each rank-4 input with 1, 3 or 4 channels (``specs``
    in the Keras model's channels-last layout), from the user's settings and the model."""
    images = [s for s in specs if s.rank == 4 and s.shape[3] in (1, 3, 4)]
    if (image_size or image_range or channel_order) and len(images) != 1:
        raise InputError(
            f"image settings: expected a model with one image input (rank 4, 1/3/4 "
            f"channels), got inputs {[(s.name, s.shape) for s in specs]}"
        )
    readers = first_readers(trace, [s.name for s in images])
    recorded: dict[str, ImageSpec] = {}
    for spec in images:
        size = image_size or (spec.shape[1], spec.shape[2])
        fixed = (spec.shape[1], spec.shape[2])
        if image_size and all(isinstance(d, int) for d in fixed) and tuple(image_size) != fixed:
            raise InputError(
                f"image size: input {spec.name!r} takes {fixed[0]}x{fixed[1]} "
                f"images {spec.shape}, got {image_size[0]}x{image_size[1]}"
            )
        if not all(isinstance(d, int) for d in size):
            continue  # a dynamic image size with none given: nothing to resize to
        fields: dict[str, Any] = {}
        source = ""
        call = readers.get(spec.name)
        if call is not None and call.class_name == "Rescaling":
            scale = getattr(call.layer, "scale", 1.0)
            if abs(float(np.max(scale))) <= 0.1:
                fields, source = {"value_range": (0.0, 255.0)}, f"Rescaling {call.path!r}"
        elif call is not None:
            found = _application(model, call.path)
            if found is not None:
                fields = dict(NAMED_RANGES[found[1]])
                source = f"keras.applications {found[0]} ({found[1]} preprocessing)"
        if image_range:
            try:
                fields = parse_value_range(image_range)
            except ValueError as exc:
                raise InputError(f"--image-range: {exc}") from None
            source = "given at export"
        if channel_order:
            if channel_order.lower() not in ("rgb", "bgr"):
                raise InputError(f"channel order: expected rgb or bgr, got {channel_order!r}")
            fields["channel_order"] = channel_order.lower()
        recorded[spec.name] = ImageSpec(
            size=(cast(int, size[0]), cast(int, size[1])),  # fixed: checked above
            channels=cast(int, spec.shape[3]),
            layout="nchw" if spec.name in nchw else "nhwc",
            source=source,
            **fields,
        )
    return recorded


#: What the source file cannot tell about an image input, and the flags that say it.
NOT_RECORDED = (
    "not recorded in the Keras file: Pillow bilinear stretch with EXIF applied assumed; name the "
    "author's pipeline with --image-preset (teachable-machine, keras-load-img, "
    "image-dataset-from-directory, …) or --image-resize/--image-filter/--image-library"
)


def image_recipes(
    images: dict[str, ImageSpec],
    steps: dict[str, Any] | None = None,
    *,
    range_given: bool = False,
) -> dict[str, Any]:
    """Input name → :class:`portanet.images.Recipe` for each image input: the recorded
    :class:`ImageSpec` (size, layout, detected or given values) with the geometry named by
    ``steps`` (``preset``, ``resize``, ``filter``, ``library``, ``exif``; explicit steps over the
    preset's). A preset's value range that contradicts what the model says is refused unless
    ``--image-range`` (``range_given``) settles it; a geometry nobody named is recorded as
    assumed, with the flags that name it (:data:`NOT_RECORDED`)."""
    from portanet.images import Recipe, preset_fields

    steps = {k: v for k, v in (steps or {}).items() if v is not None}
    if steps and len(images) != 1:
        raise InputError(
            f"image recipe: expected a model with one image input (rank 4, 1/3/4 channels), "
            f"got {len(images)} ({', '.join(images) or 'none'})"
        )
    fields = preset_fields(steps.pop("preset")) if "preset" in steps else {}
    named = bool(fields) or bool(steps)
    fields.update(steps)
    recipes: dict[str, Any] = {}
    for name, spec in images.items():
        base = Recipe.from_image_spec(spec)
        values: dict[str, Any] = {
            k: fields[k] for k in ("value_range", "mean", "std", "channel_order") if k in fields
        }
        detected: dict[str, Any] = {
            "value_range": spec.value_range,
            "mean": spec.mean,
            "std": spec.std,
            "channel_order": spec.channel_order,
        }
        if values and not range_given:
            if (
                spec.value_range is not None
                and spec.source
                and any(values.get(k, detected[k]) != detected[k] for k in detected)
            ):
                raise InputError(
                    f"image input {name!r}: preset {fields.get('preset')!r} takes "
                    f"{values}, but the model says {spec.describe()}; settle it with "
                    f"--image-range (and --channel-order)"
                )
            range_source = base.range_source or f"preset {fields.get('preset')}"
        else:
            values = {}
            range_source = base.range_source
        geometry = {
            k: v
            for k, v in fields.items()
            if k not in ("value_range", "mean", "std", "channel_order")
        }
        source = (
            f"preset {fields['preset']}"
            if "preset" in fields and not steps
            else "given at export"
            if named
            else NOT_RECORDED
        )
        recipes[name] = base.replace(**geometry, **values, source=source, range_source=range_source)
    return recipes
