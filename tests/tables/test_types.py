"""portanet.tables.types: how every format picks its columns — by name in model order, kept
columns beside them, names given twice refused, and positional columns only when confirmed."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.tables.types import Batch, Columns, duplicate_names, select_columns, slices


def test_duplicate_names_in_order_of_first_repeat():
    assert duplicate_names(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]
    assert duplicate_names(["a", "b"]) == []


def test_features_come_in_model_order_with_the_kept_columns():
    columns = Columns(("a", "b", "c"), 3, ("id",))
    assert select_columns(["id", "c", "x", "a", "b"], columns, "f.csv") == (
        ["a", "b", "c"],
        ["id"],
    )


@pytest.mark.parametrize(
    "names, columns, message",
    [
        (
            ["a", "b", "a"],
            Columns(("a", "b"), 2),
            r"f\.csv: expected each column name once, got \['a'\]",
        ),
        (["a", "b"], Columns(("a", "b"), 2, ("id",)), r"expected the kept columns \['id'\]"),
        (["a", "x"], Columns(("a", "b"), 2), r"\(missing \['b'\]\)"),
        (["b", "a"], Columns(None, 2), r"no feature names.*\['b', 'a'\].*positional columns"),
        (
            ["p", "q", "r"],
            Columns(None, 2, positional=True),
            r"expected 2 feature columns .* got 3",
        ),
    ],
    ids=["twice", "kept-missing", "feature-missing", "unnamed-model", "positional-width"],
)
def test_what_cannot_be_picked_surely_is_refused(names, columns, message):
    with pytest.raises(InputError, match=message):
        select_columns(names, columns, "f.csv")


def test_positional_columns_are_taken_in_file_order_once_confirmed():
    columns = Columns(None, 2, ("id",), positional=True)
    assert select_columns(["b", "id", "a"], columns, "f.csv") == (["b", "a"], ["id"])


@pytest.mark.parametrize("total, size", [(0, 3), (1, 3), (10, 3), (9, 3), (5, 100)])
def test_slices_cover_every_row_once(total, size):
    parts = list(slices(total, size))
    covered = [i for start, stop in parts for i in range(start, stop)]
    assert covered == list(range(total))
    assert all(0 < stop - start <= size for start, stop in parts)


def test_a_batch_counts_its_samples():
    assert Batch(np.zeros((4, 3), np.float32)).rows == 4
    assert Batch(np.zeros((0, 3), np.float32)).rows == 0
    assert Batch(np.zeros((2, 5, 5, 3), np.float32)).rows == 2
