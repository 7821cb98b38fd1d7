"""Gate data: integer inputs hold whole numbers inside their vocabulary, named by file row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.export.verify.data import check_whole, read_data
from portanet.schema import ModelSchema, TensorSpec


def test_whole_ids_pass_and_fractions_or_outsiders_name_the_row():
    ids = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    check_whole(Path("ids.npy"), "x", ids, (0, 10, "vocabulary"))
    ids[2, 1] = 2.5
    with pytest.raises(
        InputError, match=r"ids.npy: input 'x' expects whole numbers, got 2.5 in row 2"
    ):
        check_whole(Path("ids.npy"), "x", ids)
    ids[2, 1] = 10
    with pytest.raises(InputError, match=r"whole ids in \[0, 10\) \(vocabulary\), got 10 in row 2"):
        check_whole(Path("ids.npy"), "x", ids, (0, 10, "vocabulary"))


def test_int64_ids_read_into_an_int32_input_and_fractions_are_refused(tmp_path):
    schema = ModelSchema((TensorSpec("x", (None, 3), "int32"),), (TensorSpec("y", (None, 1)),))
    np.save(tmp_path / "ids.npy", np.arange(12, dtype=np.int64).reshape(4, 3))
    np.save(tmp_path / "half.npy", np.full((4, 3), 0.5))
    got = read_data(tmp_path / "ids.npy", schema, list(schema.inputs))["x"]
    assert got.dtype == np.int32 and got[3, 2] == 11
    with pytest.raises(InputError, match="expects whole numbers, got 0.5 in row 0"):
        read_data(tmp_path / "half.npy", schema, list(schema.inputs))
