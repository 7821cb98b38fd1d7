"""Large JSON bodies through simdjson give exactly what the ordinary reader gives: the same
arrays, dtypes and ids, the same 400s for booleans, nulls, strings, ragged or nested data,
overflows and wrong counts; nested data, NaN literals and escaped brackets take the ordinary
path."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from portanet.serve import json_fast
from portanet.serve.protocol import ProtocolError, parse_infer_request

pytest.importorskip("simdjson")
PAD = [0.5] * 30000  # a body over json_fast.MIN_BYTES


def _doc(data, datatype="FP32", shape=None, **extra) -> dict:
    shape = shape if shape is not None else [len(data)]
    return {
        "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        **extra,
    }


def _both(body: bytes, monkeypatch):
    """(simdjson's answer, the ordinary reader's answer): an InferRequest or the error."""

    def parse():
        try:
            return parse_infer_request(body)
        except ProtocolError as exc:
            return exc

    fast = parse()
    with monkeypatch.context() as patch:
        patch.setattr(json_fast, "simdjson", None)
        plain = parse()
    return fast, plain


def _image() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)


def test_an_image_as_flat_json_is_read_by_simdjson_bit_for_bit(monkeypatch):
    image = _image()
    body = orjson.dumps(_doc(image.reshape(-1).tolist(), shape=[1, 224, 224, 3], id="a[1]"))
    assert json_fast.parse_large(body) is not None
    fast, plain = _both(body, monkeypatch)
    assert fast.inputs["x"].dtype == np.float32 and np.array_equal(fast.inputs["x"], image)
    assert np.array_equal(plain.inputs["x"], image) and fast.id == plain.id == "a[1]"
    assert fast.outputs == plain.outputs
    spaced = json.dumps(_doc(image.reshape(-1).tolist(), shape=[1, 224, 224, 3])).encode()
    assert np.array_equal(parse_infer_request(spaced).inputs["x"], image)  # ", " separators


@pytest.mark.parametrize(
    ("data", "datatype", "shape"),
    [
        ([[5.0, 6.0, *PAD], []], "FP32", [30002]),  # ragged: simdjson would flatten it
        ([*PAD, True], "FP32", None),
        ([*PAD, "1"], "FP32", None),
        ([*PAD, None], "FP32", None),
        ([*PAD, 1e39], "FP32", None),
        ([*PAD, 70000.0], "FP16", None),
        ([1] * 30000 + [1.5], "INT8", None),
        (PAD, "FP32", [30001]),
    ],
    ids=["ragged", "bool", "string", "null", "fp32-overflow", "fp16-overflow", "int8", "count"],
)
def test_refusals_are_the_ordinary_readers(monkeypatch, data, datatype, shape):
    fast, plain = _both(orjson.dumps(_doc(data, datatype, shape)), monkeypatch)
    assert isinstance(fast, ProtocolError) and isinstance(plain, ProtocolError)
    assert (str(fast), fast.status) == (str(plain), plain.status)


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(_doc(_image().tolist(), shape=[1, 224, 224, 3])),  # nested data
        json.dumps(_doc([*PAD, float("nan")])).encode(),  # NaN: simdjson refuses the literal
        orjson.dumps(_doc(PAD, id="\\u005b")).replace(b"\\\\u005b", b"\\u005b"),  # "[" escaped
    ],
    ids=["nested", "nan", "escaped-bracket"],
)
def test_unusual_bodies_take_the_ordinary_path_with_the_same_answer(monkeypatch, body):
    assert json_fast.parse_large(body) is None
    fast, plain = _both(body, monkeypatch)
    assert np.array_equal(fast.inputs["x"], plain.inputs["x"], equal_nan=True)
    assert fast.id == plain.id


def test_integers_keep_their_exact_values(monkeypatch):
    big = [2**62 + 1] * 30000
    fast, plain = _both(orjson.dumps(_doc(big, "INT64")), monkeypatch)
    assert fast.inputs["x"].dtype == np.int64 and int(fast.inputs["x"][0]) == 2**62 + 1
    assert np.array_equal(fast.inputs["x"], plain.inputs["x"])


def test_a_duplicate_key_takes_the_ordinary_path_which_keeps_the_last(monkeypatch):
    body = orjson.dumps(_doc(PAD)).replace(b'"data":', b'"data":[1.0],"data":', 1)
    assert json_fast.parse_large(body) is None
    fast, plain = _both(body, monkeypatch)
    assert np.array_equal(fast.inputs["x"], plain.inputs["x"]) and fast.inputs["x"].size == 30000


def test_parsers_are_kept_per_thread_and_a_busy_one_is_never_reused(monkeypatch):
    """A kept parser serves the next body; one whose document is still held is skipped (simdjson
    would refuse it), and the held document stays intact."""
    import threading

    monkeypatch.setattr(json_fast, "_pools", threading.local())
    monkeypatch.setattr(json_fast, "POOLED_PER_THREAD", 2)
    first = orjson.dumps(_doc([1.5] * 30000))
    second = orjson.dumps(_doc([-2.25] * 30000))
    held = json_fast.parse_large(first)  # its LazyData keeps the parser busy
    other = json_fast.parse_large(second)
    assert len(json_fast._pools.parsers) == 2
    assert np.array_equal(held["inputs"][0]["data"].floats(), np.full(30000, 1.5))
    assert np.array_equal(other["inputs"][0]["data"].floats(), np.full(30000, -2.25))
    kept = list(json_fast._pools.parsers)
    del held, other
    for _ in range(3):  # both free again: no new parser
        assert json_fast.parse_large(first)["inputs"][0]["data"].floats()[0] == 1.5
    assert json_fast._pools.parsers == kept
    busy = [json_fast.parse_large(first) for _ in range(json_fast.POOLED_PER_THREAD + 2)]
    assert len(json_fast._pools.parsers) == json_fast.POOLED_PER_THREAD  # the rest are fresh
    assert all(d["inputs"][0]["data"].floats()[0] == 1.5 for d in busy)


def test_a_body_over_the_pooled_size_gets_a_parser_of_its_own(monkeypatch):
    import threading

    monkeypatch.setattr(json_fast, "_pools", threading.local())
    monkeypatch.setattr(json_fast, "POOLED_MAX_BYTES", 100_000)
    body = orjson.dumps(_doc([0.5] * 60000))
    assert len(body) > 100_000
    assert json_fast.parse_large(body)["inputs"][0]["data"].floats().size == 60000
    assert getattr(json_fast._pools, "parsers", None) is None


def test_a_malformed_body_leaves_the_kept_parser_usable(monkeypatch):
    import threading

    monkeypatch.setattr(json_fast, "_pools", threading.local())
    good = orjson.dumps(_doc([3.0] * 30000))
    assert json_fast.parse_large(good[:-5]) is None  # simdjson refuses: the ordinary path
    assert json_fast.parse_large(good)["inputs"][0]["data"].floats()[0] == 3.0
    assert len(json_fast._pools.parsers) == 1
