"""portanet.images.recorded: recipes as an exported file records them (the
``portanet.preprocessing`` metadata key), files from before recipes read from their image
specs, and the recipe ``infer`` applies: recorded, overridden, or refused without a range."""

from __future__ import annotations

import pytest

from portanet.errors import InputError
from portanet.images import input_recipe, recipe_from_preset
from portanet.images.recorded import recipes_of
from portanet.schema import PREPROCESSING, ImageSpec, TensorSpec


def test_a_file_from_before_recipes_keeps_what_infer_did():
    spec = ImageSpec((16, 16), 1, (0.0, 255.0), source="Rescaling 'rescaling'")
    old = recipes_of({}, {"x": spec})["x"]
    assert (old.resize, old.filter, old.library, old.exif) == (
        "stretch",
        "bilinear",
        "pillow",
        True,
    )
    assert old.image_spec() == spec
    recorded = recipe_from_preset("teachable-machine", (16, 16), channels=1)
    assert recipes_of({PREPROCESSING: {"x": recorded.to_dict()}}, {"x": spec})["x"] == recorded


def test_a_recorded_recipe_that_is_not_an_object_is_refused():
    with pytest.raises(
        InputError,
        match=r"portanet.preprocessing: expected a recipe object for "
        r"input 'x', got list",
    ):
        recipes_of({PREPROCESSING: {"x": [224, 224]}}, {})


def test_a_preset_takes_size_channels_and_overrides():
    recipe = recipe_from_preset("teachable-machine", (96, 128), channels=1, exif=False)
    assert (recipe.size, recipe.channels, recipe.exif) == ((96, 128), 1, False)
    assert (recipe.resize, recipe.filter, recipe.value_range) == ("crop", "lanczos", (-1.0, 1.0))


IMAGE = TensorSpec("pixels", (None, 64, 48, 3))


def test_the_recorded_recipe_is_used_and_given_fields_override_it():
    recorded = recipe_from_preset("teachable-machine", (64, 48))
    spec, recipe = input_recipe([IMAGE], {"pixels": recorded}, None, "m.onnx")
    assert spec == IMAGE and recipe == recorded
    _, given = input_recipe(
        [IMAGE], {"pixels": recorded}, {"value_range": (0.0, 1.0), "mean": None}, "m.onnx"
    )
    assert given.value_range == (0.0, 1.0) and given.range_source == "given at inference"
    assert given.resize == "crop"  # the rest as recorded


@pytest.mark.parametrize(
    "shape, layout, size, channels",
    [((None, 64, 48, 3), "nhwc", (64, 48), 3), ((None, 1, 28, 32), "nchw", (28, 32), 1)],
)
def test_without_a_recipe_the_shape_decides_and_the_range_must_be_given(
    shape, layout, size, channels
):
    spec = TensorSpec("x", shape)
    with pytest.raises(
        InputError,
        match=r"m.onnx: input 'x': expected the pixel value range.*"
        r"--image-range",
    ):
        input_recipe([spec], {}, None, "m.onnx")
    _, recipe = input_recipe([spec], {}, {"value_range": (0.0, 255.0)}, "m.onnx")
    assert (recipe.layout, recipe.size, recipe.channels) == (layout, size, channels)
    assert (recipe.resize, recipe.filter, recipe.library) == ("stretch", "bilinear", "pillow")


@pytest.mark.parametrize(
    "specs, message",
    [
        ([TensorSpec("x", (None, 8))], r"images need a model with one image input \(rank 4\)"),
        ([IMAGE, TensorSpec("y", (None, 4))], "images need a model with one image input"),
        ([TensorSpec("x", (None, None, None, 3))], "expected a fixed image size"),
        ([TensorSpec("x", (None, 32, 32, 7))], "expected 1, 3 or 4 image channels, got 7"),
    ],
    ids=["table-model", "two-inputs", "dynamic-size", "seven-channels"],
)
def test_models_images_cannot_fit_are_refused(specs, message):
    with pytest.raises(InputError, match=message):
        input_recipe(specs, {}, {"value_range": (0.0, 1.0)}, "m.onnx")
