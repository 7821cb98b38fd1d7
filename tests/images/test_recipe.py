"""The recipe: checked when made, JSON round trip for the metadata, presets by name, a line for
inspect; what cannot be reproduced is refused, not approximated."""

from __future__ import annotations

import pytest

from portanet.errors import InputError
from portanet.images import PRESETS, Recipe, recipe_from_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    open_range = {} if "value_range" in PRESETS[name][0] else {"value_range": (0.0, 1.0)}
    recipe = recipe_from_preset(name, (224, 192), **open_range)
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.preset == name and name in recipe.describe()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"filter": "bicubic", "library": "tensorflow"}, "not reproduced TF-free"),
        ({"resize": "pad", "library": "keras"}, "load_img does not pad"),
        ({"resize": "squash"}, "resize: expected one of stretch, crop, pad"),
        ({"channels": 2}, "channels: expected 1, 3 or 4"),
        ({"value_range": (1.0, 1.0)}, "LOW < HIGH"),
    ],
)
def test_a_recipe_that_cannot_be_applied_is_refused(fields, message):
    with pytest.raises(InputError, match=message):
        Recipe((8, 8), **fields)


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(InputError, match="teachable-machine, keras-load-img"):
        recipe_from_preset("teachable", (224, 224))


def test_a_newer_recipe_is_refused_not_applied_half_way():
    data = Recipe((8, 8), value_range=(0.0, 1.0)).to_dict() | {"gamma": 2.2}
    with pytest.raises(InputError, match=r"does not know the steps \['gamma'\]"):
        Recipe.from_dict(data)
