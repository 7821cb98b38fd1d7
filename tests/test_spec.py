import numpy as np
import pytest

from portanet.spec import BINARY_CLASSIFIER, ModelSchema, TensorSpec, dtype_from_ort


def test_schema_round_trips_through_json():
    schema = ModelSchema(inputs=(TensorSpec("features", (None, 8)),),
                         outputs=(TensorSpec("probability", (None, 1)),),
                         feature_names=tuple("abcdefgh"), task=BINARY_CLASSIFIER, threshold=0.5,
                         labels=("no", "yes"))
    again = ModelSchema.from_json(schema.to_json())
    assert again == schema
    assert again.inputs[0].rank == 2
    assert again.inputs[0].numpy_dtype == np.float32


@pytest.mark.parametrize("ort_type, expected", [
    ("tensor(float)", "float32"), ("tensor(int64)", "int64"), ("tensor(double)", "float64"),
    ("tensor(bool)", "bool")], ids=["float", "int64", "double", "bool"])
def test_ort_types_map_to_numpy(ort_type, expected):
    assert dtype_from_ort(ort_type) == expected
