"""portanet.tables.arrow: numpy ↔ Arrow from buffers, checked against pyarrow's own
conversions (``pa.array`` with a mask, ``Array.to_numpy``, ``dictionary_encode``) on slices,
nulls and every numeric type."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from portanet.errors import InputError
from portanet.tables.arrow import from_numpy, int_array, names_array, string_array, to_numpy


@pytest.mark.parametrize(
    "kind", [pa.int8(), pa.uint16(), pa.int32(), pa.int64(), pa.float32(), pa.float64()]
)
def test_to_numpy_gives_pyarrows_values_for_slices_and_nulls(kind):
    values = [1, 2, None, 4, 5, None, 7, 8, 9, 10, 11]
    array = pa.array(values, type=kind)
    for piece in (array, array.slice(3), array.slice(1, 5), pa.array(range(9), type=kind)):
        expected = piece.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls as NaN
        got = to_numpy(piece)
        np.testing.assert_array_equal(got.astype(np.float64), expected)
        if piece.null_count == 0:
            assert got.dtype == kind.to_pandas_dtype()


def test_booleans_become_zeros_and_ones_even_at_an_offset():
    array = pa.array([True, False, True, True, False, None, True, False, True, True])
    for piece in (array, array.slice(3), array.slice(5, 4)):
        expected = [np.nan if v is None else float(v) for v in piece.to_pylist()]
        np.testing.assert_array_equal(to_numpy(piece), expected)


def test_text_is_not_a_number():
    with pytest.raises(InputError, match="expected a numeric Arrow array, got string values"):
        to_numpy(pa.array(["1", "2"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_from_numpy_equals_pa_array(dtype):
    values = (np.arange(20) * 3 % 11).astype(dtype)[::2]  # not contiguous
    got = from_numpy(values)
    assert got.equals(pa.array(values))
    assert from_numpy(got) is got
    objects = np.array(["a", None, "c"], dtype=object)
    assert from_numpy(objects).equals(pa.array(["a", None, "c"]))


def test_int_and_string_arrays_equal_pyarrows_with_a_mask():
    mask = np.array([False, True, False, False, True])
    values = np.array([3, 1, 4, 1, 5])
    assert int_array(values, mask).equals(pa.array(values, type=pa.int64(), mask=mask))
    assert int_array(values).equals(pa.array(values, type=pa.int64()))
    words = ["ünï", None, "", "code", "x" * 300]
    assert string_array(words).equals(pa.array(words, type=pa.string()))
    assert string_array(words, mask).equals(
        pa.array(["ünï", None, "", "code", None], type=pa.string())
    )


def test_names_array_decodes_to_the_names_pyarrow_would_encode():
    names = ["cat", "dog", "bird"]
    indices = np.array([2, 0, 0, 1, 2, 1])
    mask = np.array([False, False, True, False, False, False])
    array = names_array(indices, names, mask)
    expected = [None if m else names[i] for i, m in zip(indices, mask, strict=True)]
    assert array.to_pylist() == expected
    assert array.cast(pa.string()).equals(pa.array(expected))
    assert pa.types.is_dictionary(array.type) and array.dictionary.to_pylist() == names
