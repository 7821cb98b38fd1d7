"""Recipes as recorded in an exported file: the ``portanet.preprocessing`` metadata key (input
name → recipe), with files from before recipes read from their schema's image specs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portanet import schema as meta
from portanet.errors import InputError
from portanet.images.recipe import Recipe, preset_fields


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
