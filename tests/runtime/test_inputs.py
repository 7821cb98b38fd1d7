"""portanet.runtime.inputs: what callers pass becomes checked feeds, and every refusal names the
input, what was expected, what was got and the first offending row."""

import numpy as np
import pyarrow as pa
import pytest

from portanet.errors import InputError
from portanet.runtime.inputs import (
    check_finite,
    check_vocabulary,
    coerce_array,
    columns_of,
    first_nonfinite,
    first_out_of_range,
    stack_features,
)
from portanet.schema import TensorSpec

ROWS = TensorSpec("features", (None, 3), "float32")
IDS = TensorSpec("ids", (None, 4), "int32")


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ([[1, 2, 3], [4, 5, 6]], (2, 3)),
        ([1, 2, 3], (1, 3)),  # one sample without its batch dimension
        (np.arange(6, dtype=np.float64).reshape(2, 3), (2, 3)),
        (np.array([[1, 2, 3]], dtype=object), (1, 3)),
    ],
    ids=["rows", "one-row", "float64", "objects-holding-numbers"],
)
def test_coerce_array_gives_contiguous_float32(value, shape):
    array = coerce_array(value, ROWS)
    assert array.dtype == np.float32 and array.shape == shape and array.flags.c_contiguous


@pytest.mark.parametrize(
    ("value", "spec", "message"),
    [
        ([[1, 2]], ROWS, "expected size 3 on axis 1 (batch, 3), got 2 (1, 2)"),
        ([[[1, 2, 3]]], ROWS, "expected 2 dimensions (batch, 3), got 3"),
        ([[1, "x", 3]], ROWS, "expected numbers (float32), got <U"),
        ([[1, 2, 3], [1, 2]], ROWS, "input 'features'"),
        ([[1, np.nan, 3]], ROWS, "got NaN in row 0"),
        ([[1, 2, 3], [1, -np.inf, 3]], ROWS, "got -inf in row 1"),
        ([[1, 2, 3], [1e39, 2, 3]], ROWS, "got 1e+39, outside float32 range in row 1"),
        (
            [[1, 2, 3, 4.5]],
            IDS,
            "expected integers (int32), got non-integer values, first in row 0",
        ),
        ([[1j, 2, 3]], ROWS, "expected numbers (float32), got complex128"),
    ],
    ids=[
        "width",
        "rank",
        "strings",
        "ragged",
        "nan",
        "inf",
        "overflow",
        "fraction-for-ids",
        "complex",
    ],
)
def test_coerce_array_refuses_and_says_where(value, spec, message):
    with pytest.raises(InputError) as caught:
        coerce_array(value, spec)
    assert message in str(caught.value)


def test_allow_nan_lets_nan_through_but_never_an_overflow():
    assert np.isnan(coerce_array([[1, np.nan, 3]], ROWS, allow_nan=True)[0, 1])
    with pytest.raises(InputError, match="outside float32 range"):
        coerce_array([[1e39, 2, 3]], ROWS, allow_nan=True)


def test_first_nonfinite_and_out_of_range_locate_the_value():
    array = np.array([[1.0, 2.0], [3.0, np.inf]])
    assert first_nonfinite(array) == (1, 1, np.inf)
    assert first_nonfinite(np.array([1, 2])) is None  # ints hold no NaN
    assert first_nonfinite(np.float64("nan"))[0:2] == (0, 0)
    assert first_out_of_range(np.array([[1.0], [-4e38]]), np.dtype(np.float32)) == (1, -4e38)
    assert first_out_of_range(np.array([np.inf]), np.dtype(np.float32)) is None  # not finite
    assert first_out_of_range(np.array([1.0], np.float32), np.dtype(np.float32)) is None


def test_check_finite_counts_rows_from_the_offset():
    with pytest.raises(InputError, match="got NaN in row 102"):
        check_finite("x", np.array([[0.0], [np.nan]]), row_offset=101)
    with pytest.raises(InputError, match="expected a finite number, got inf"):
        check_finite("x", np.array(np.inf))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([[1, 2], [3, -5]]), "got -5 in row 1"),
        (np.array([[1, 50]]), "got 50 in row 0"),
        (np.array([[1.0, 2.5]]), "got 2.5 in row 0"),
        (np.array([[1.0, np.nan]]), "got NaN in row 0"),
    ],
    ids=["negative", "past-the-end", "fraction", "nan"],
)
def test_check_vocabulary_refuses_ids_outside_the_table(ids, message):
    with pytest.raises(InputError, match=r"expected integer ids in \[0, 50\)") as caught:
        check_vocabulary("ids", ids, 50)
    assert message in str(caught.value)


def test_check_vocabulary_passes_valid_ids():
    check_vocabulary("ids", np.array([[0, 49]]), 50)
    check_vocabulary("ids", np.array([[0.0, 49.0]]), 50)
    check_vocabulary("ids", np.empty((0, 2)), 50)


def test_columns_of_reads_dicts_and_arrow_tables():
    table = pa.table({"b": [1, 2], "a": [3, 4]})
    assert list(columns_of(table)) == ["b", "a"]
    assert columns_of({"a": [1]}) == {"a": [1]}
    assert columns_of(np.zeros((1, 2))) is None


def test_stack_features_puts_columns_in_the_model_order():
    out = stack_features({"c": [3, 6], "a": [1, 4], "b": [2, 5]}, ["a", "b", "c"], ROWS)
    assert out.dtype == np.float32 and out.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"a": [1], "b": [2]}, "missing ['c']"),
        ({"a": [1], "b": [2], "c": [3], "d": [4]}, "unknown ['d']"),
        ({"a": [1, 2], "b": [2], "c": [3]}, "expected columns of one length, got lengths [1, 2]"),
        ({"a": [1], "b": ["x"], "c": [3]}, "column 'b': input 'features.b'"),
    ],
    ids=["missing", "unknown", "lengths", "strings"],
)
def test_stack_features_refuses(columns, message):
    with pytest.raises(InputError) as caught:
        stack_features(columns, ["a", "b", "c"], ROWS)
    assert message in str(caught.value)
