"""Recipes as recorded in an exported file: the ``portanet.preprocessing`` metadata key (input
name → recipe), with files from before recipes read from their schema's image specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from portanet import schema as meta
from portanet.errors import InputError
from portanet.images.recipe import Recipe, preset_fields
from portanet.schema import TensorSpec


def recipe_from_preset(
    name: str, size: tuple[int, int], channels: int = 3, **fields: Any
) -> Recipe:
    """The recipe of preset ``name`` for images of ``size`` (height, width); ``fields`` fill
    or override the rest (a preset that leaves the value range open needs ``value_range``)."""
    return Recipe(size=size, channels=channels, **{**preset_fields(name), **fields})


def recipes_of(
    metadata: Mapping[str, Any], images: Mapping[str, meta.ImageSpec]
) -> dict[str, Recipe]:
    """Input name → recipe for a model's decoded ``metadata`` and schema ``images``."""
    recorded = metadata.get(meta.PREPROCESSING)
    recipes = {name: Recipe.from_image_spec(spec) for name, spec in images.items()}
    if isinstance(recorded, dict):
        for name, data in recorded.items():
            if not isinstance(data, dict):
                raise InputError(
                    f"metadata {meta.PREPROCESSING}: expected a recipe object for input "
                    f"{name!r}, got {type(data).__name__}"
                )
            recipes[str(name)] = Recipe.from_dict(data)
    return recipes


def input_recipe(
    specs: Sequence[TensorSpec],
    recipes: Mapping[str, Recipe],
    override: dict[str, Any] | None,
    origin: str,
) -> tuple[TensorSpec, Recipe]:
    """The model's image input and its recipe: what was recorded at export
    (:func:`portanet.images.recipes_of`), with ``override`` fields (``value_range``,
    ``channel_order``, ``mean``, ``std``) on top. Without a recorded or given value range,
    images are refused: guessing it would give answers that look right and are not."""
    candidates = [s for s in specs if s.rank == 4]
    if len(specs) != 1 or not candidates:
        raise InputError(
            f"{origin}: images need a model with one image input (rank 4), got "
            f"inputs {[(s.name, s.shape) for s in specs]}"
        )
    spec = candidates[0]
    recipe = recipes.get(spec.name)
    if recipe is None:
        layout = "nchw" if spec.shape[1] in (1, 3, 4) and spec.shape[3] not in (1, 3, 4) else "nhwc"
        dims = spec.shape[2:4] if layout == "nchw" else spec.shape[1:3]
        channels = spec.shape[1] if layout == "nchw" else spec.shape[3]
        fixed = [d for d in (*dims, channels) if isinstance(d, int)]
        if len(fixed) != 3:
            raise InputError(
                f"{origin}: input {spec.name!r} {spec.shape}: expected a fixed "
                f"image size and channel count to resize images to, got dynamic "
                f"dimensions and no image size recorded at export"
            )
        height, width, count = fixed
        if count not in (1, 3, 4):
            raise InputError(
                f"{origin}: input {spec.name!r}: expected 1, 3 or 4 image channels, got {count}"
            )
        recipe = Recipe(
            (height, width),
            count,
            layout=layout,
            source="not recorded (shape of the ONNX input): Pillow bilinear stretch",
        )
    fields = {k: v for k, v in (override or {}).items() if v is not None}
    if fields:
        recipe = recipe.replace(**fields, range_source="given at inference")
    if recipe.value_range is None:
        raise InputError(
            f"{origin}: input {spec.name!r}: expected the pixel value range the "
            f"model was trained on (recorded at export, or given as an image "
            f"range such as 0..1, -1..1 or 0..255 with --image-range), got none"
        )
    return spec, recipe
