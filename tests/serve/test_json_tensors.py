"""JSON tensor data into checked arrays: booleans, integers, ranges, NaN next to an overflow,
nesting depth — the rules a request's ``data`` is held to before it reaches the model."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.serve.datatypes import DATATYPES
from portanet.serve.json_tensors import (
    MAX_DEPTH,
    bools_in_data,
    count_byte,
    loads,
    tensor_from_json,
)
from portanet.serve.protocol import ProtocolError

FP32, FP16, INT8, BOOL = (DATATYPES[n] for n in ("FP32", "FP16", "INT8", "BOOL"))


def test_nested_and_flat_data_give_the_same_array():
    nested = tensor_from_json([[1.5, 2], [3, 4]], FP32, (2, 2), "x")
    flat = tensor_from_json([1.5, 2, 3, 4], FP32, (2, 2), "x")
    assert nested.dtype == np.float32 and np.array_equal(nested, flat)
    assert np.array_equal(flat, np.array([[1.5, 2], [3, 4]], np.float32))


@pytest.mark.parametrize(
    ("data", "dtype", "shape", "message"),
    [
        ([1.0, True], FP32, (2,), "expected numbers for datatype FP32, got true/false"),
        ([1, 0], BOOL, (2,), "expected true/false for datatype BOOL"),
        ([1.5, 2], INT8, (2,), "expected integers for datatype INT8, got 1.5 at flat index 0"),
        ([1, 300], INT8, (2,), "expected values in [-128, 127] for datatype INT8, got 300"),
        ([1.0, 1e39], FP32, (2,), "got 1e+39 at flat index 1: outside float32 range"),
        ([70000.0], FP16, (1,), "got 70000 at flat index 0: outside float16 range"),
        ([[1, 2], [3]], FP32, (3,), "a ragged or mixed list"),
        ([1, "2"], FP32, (2,), "expected numbers for datatype FP32, got str '2'"),
        ([1, 2, 3], FP32, (2, 2), "'shape' [2, 2] needs 4 values, got 3 in 'data'"),
    ],
)
def test_refused_data_names_the_rule(data, dtype, shape, message):
    with pytest.raises(ProtocolError, match=None) as caught:
        tensor_from_json(data, dtype, shape, "input 'x'")
    assert caught.value.status == 400
    assert str(caught.value).startswith("input 'x': ") and message in str(caught.value)


def test_an_overflow_next_to_a_nan_is_still_refused():
    """NaN makes max() NaN: the range check must not be skipped (it would become inf)."""
    data = loads(b"[NaN, 1e39, 2.0]")  # the Python-json fallback reads NaN
    with pytest.raises(ProtocolError, match="got 1e\\+39 at flat index 1: outside float32"):
        tensor_from_json(data, FP32, (3,), "x")
    kept = tensor_from_json(loads(b"[NaN, Infinity, 2.0]"), FP32, (3,), "x")
    assert np.isnan(kept[0]) and np.isinf(kept[1]) and kept[2] == 2.0  # NaN/Inf judged later


def test_bools_found_only_in_tensor_data():
    text = b'{"inputs": [{"data": [1, 2]}], "parameters": {"binary_data_output": true}}'
    assert not bools_in_data(text, loads(text))
    text = b'{"inputs": [{"data": [1, true]}], "parameters": {"binary_data_output": true}}'
    assert bools_in_data(memoryview(text), loads(text))


def test_depth_and_malformed_json_are_400():
    deep = b"[" * (MAX_DEPTH + 10) + b"]" * (MAX_DEPTH + 10)
    with pytest.raises(ProtocolError, match=f"nested at most {MAX_DEPTH} deep"):
        loads(deep)
    with pytest.raises(ProtocolError, match="malformed JSON"):
        loads(b'{"inputs": [1, 2')


def test_count_byte_counts_across_its_steps_and_in_views():
    text = (b"[1,2],[3]," * 300_000) + b"["  # 3 MB: several steps of the count
    assert count_byte(text, b"[") == text.count(b"[") == 600_001
    assert count_byte(text, b",") == text.count(b",")
    assert count_byte(memoryview(text)[1:7], b",") == 2
    assert count_byte(b"", b"[") == 0
