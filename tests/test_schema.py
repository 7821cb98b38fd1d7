import numpy as np
import pytest

from portanet import schema as meta
from portanet.errors import ModelLoadError
from portanet.schema import BINARY_CLASSIFIER, ModelSchema, TensorSpec, dtype_from_ort


def test_schema_round_trips_through_json():
    schema = ModelSchema(
        inputs=(TensorSpec("features", (None, 8)),),
        outputs=(TensorSpec("probability", (None, 1)),),
        feature_names=tuple("abcdefgh"),
        task=BINARY_CLASSIFIER,
        threshold=0.5,
        labels=("no", "yes"),
    )
    again = ModelSchema.from_json(schema.to_json())
    assert again == schema
    assert again.inputs[0].rank == 2
    assert again.inputs[0].numpy_dtype == np.float32


@pytest.mark.parametrize(
    "ort_type, expected",
    [
        ("tensor(float)", "float32"),
        ("tensor(int64)", "int64"),
        ("tensor(double)", "float64"),
        ("tensor(bool)", "bool"),
    ],
    ids=["float", "int64", "double", "bool"],
)
def test_ort_types_map_to_numpy(ort_type, expected):
    assert dtype_from_ort(ort_type) == expected


def test_encode_decode_round_trip():
    values = {
        meta.VERSION: "0.1.0",
        meta.PARITY: {"passed": True, "samples": 3},
        meta.METRICS: None,
    }
    raw = meta.encode(values)
    assert raw == {meta.VERSION: "0.1.0", meta.PARITY: '{"passed": true, "samples": 3}'}
    assert meta.decode(raw) == {meta.VERSION: "0.1.0", meta.PARITY: {"passed": True, "samples": 3}}


def test_decode_names_the_key_of_broken_json():
    with pytest.raises(ModelLoadError, match="portanet.schema"):
        meta.decode({meta.SCHEMA: "{not json"}, origin="m.onnx")
