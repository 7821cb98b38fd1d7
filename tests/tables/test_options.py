"""InferOptions: defaults defined once, validated when built, taken by infer_file."""

from __future__ import annotations

import pytest

import portanet
from portanet.errors import InputError
from portanet.tables import InferOptions, infer_file
from portanet.tables.options import LOCAL_ROWS_PER_BATCH, RAY_ROWS_PER_BATCH
from tests.helpers import COMMITTED_ONNX


def test_rows_per_batch_defaults_by_engine_and_options_are_checked_when_built():
    assert InferOptions().batch_rows == LOCAL_ROWS_PER_BATCH
    assert InferOptions(engine="ray").batch_rows == RAY_ROWS_PER_BATCH
    assert InferOptions(rows_per_batch=7, engine="ray").batch_rows == 7
    assert InferOptions(keep_columns=["id"]).keep_columns == ("id",)
    assert InferOptions(allow_nan=True, on_error="skip").policy.on_error == "skip"
    for bad, message in [
        ({"rows_per_batch": 0}, "rows per batch"),
        ({"on_error": "ignore"}, "--on-error"),
        ({"output_format": "json"}, "output format"),
        ({"engine": "spark"}, "engine"),
        ({"top_k": 0}, "top k"),
    ]:
        with pytest.raises(InputError, match=message):
            InferOptions(**bad)
    with pytest.raises(TypeError, match="no fields"):
        InferOptions().but(batch_size=3)


def test_infer_file_takes_the_options_object_and_field_overrides(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,diabetes_pedigree,age,id\n"
        "6,148,72,35,0,33.6,0.627,50,a\n1,85,66,29,0,26.6,0.351,31,b\n"
    )
    model = portanet.load(COMMITTED_ONNX)
    options = InferOptions(keep_columns=("id",), rows_per_batch=1)
    seen: list[int] = []
    result = infer_file(model, rows, tmp_path / "a.csv", options, on_batch=seen.append)
    assert result.rows == 2 and seen == [1, 1]
    same = infer_file(model, rows, tmp_path / "b.csv", options, rows_per_batch=2)
    assert same.rows == 2
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
