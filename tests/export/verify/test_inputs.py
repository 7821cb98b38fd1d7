"""Random gate inputs: the defaults by input kind, and the data's range over a hint."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.export.verify.hints import InputHint
from portanet.export.verify.inputs import random_array
from portanet.schema import TensorSpec

pytestmark = pytest.mark.usefixtures("seeded")


@pytest.mark.parametrize(
    "spec, low, high, check",
    [
        (TensorSpec("img", (None, 4, 4, 3)), None, None, lambda v: v.min() >= -1 and v.max() <= 1),
        (
            TensorSpec("ids", (None, 5), "int64"),
            None,
            None,
            lambda v: v.min() >= 0 and v.max() < 10,
        ),
        (
            TensorSpec("x", (None, 2)),
            np.array([5.0, 0.0]),
            np.array([6.0, 1.0]),
            lambda v: (v[:, 0] >= 5).all() and (v[:, 1] <= 1).all(),
        ),
        (TensorSpec("n", (None, 3)), None, None, lambda v: v.std() > 0.5 and v.min() < 0),
    ],
    ids=["image-default", "integer-default", "data-range", "normal-default"],
)
def test_random_array_defaults(spec, low, high, check):
    values = random_array(spec, 300, np.random.default_rng(2), low, high)
    assert values.shape[0] == 300 and values.dtype == spec.numpy_dtype and check(values)


def test_data_range_wins_over_a_hint():
    hint = InputHint(0.0, 255.0)
    values = random_array(
        TensorSpec("x", (None, 1)),
        100,
        np.random.default_rng(3),
        np.array([1.0]),
        np.array([2.0]),
        hint,
    )
    assert values.min() >= 1.0 and values.max() <= 2.0
