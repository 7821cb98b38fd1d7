"""Images as model inputs, TensorFlow-free (numpy and Pillow): the preprocessing
:class:`Recipe` recorded at export, its presets, and :func:`prepare`, which applies it the
same way for ``infer``, ``serve`` and :meth:`portanet.runtime.model.Model.predict_images`.

    >>> from portanet.images import Recipe, prepare, recipe_from_preset
    >>> recipe = recipe_from_preset("teachable-machine", size=(224, 224))
    >>> batch = prepare(["cat.jpg", open("dog.png", "rb").read()], recipe)  # doctest: +SKIP
"""

from portanet.images.decode import open_image
from portanet.images.prepare import (
    check_array_range,
    parse_array_range,
    prepare,
    prepare_one,
    scale_array,
)
from portanet.images.recipe import PRESETS, Recipe, preset_fields, value_fields
from portanet.images.recorded import input_recipe, recipe_from_preset, recipes_of

__all__ = [
    "PRESETS",
    "Recipe",
    "check_array_range",
    "input_recipe",
    "open_image",
    "parse_array_range",
    "prepare",
    "prepare_one",
    "preset_fields",
    "recipe_from_preset",
    "recipes_of",
    "scale_array",
    "value_fields",
]
