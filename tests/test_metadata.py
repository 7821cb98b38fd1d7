import pytest

from portanet import metadata as meta
from portanet.errors import ModelLoadError


def test_encode_decode_round_trip():
    values = {meta.VERSION: "0.1.0", meta.PARITY: {"passed": True, "samples": 3},
              meta.METRICS: None}
    raw = meta.encode(values)
    assert raw == {meta.VERSION: "0.1.0", meta.PARITY: '{"passed": true, "samples": 3}'}
    assert meta.decode(raw) == {meta.VERSION: "0.1.0", meta.PARITY: {"passed": True, "samples": 3}}


def test_decode_names_the_key_of_broken_json():
    with pytest.raises(ModelLoadError, match="portanet.schema"):
        meta.decode({meta.SCHEMA: "{not json"}, origin="m.onnx")
