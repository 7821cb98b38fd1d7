"""The gate's report: the tolerance modes, the rows to look at first, the JSON form."""

import json

import numpy as np
import pytest

from portanet.errors import InputError
from portanet.export.verify import compare as compare_module
from portanet.export.verify.compare import compare
from portanet.export.verify.parity import NOISE_FLOOR, STRICT, ParityReport, check_tolerance_mode


def test_tolerance_modes_are_checked():
    assert check_tolerance_mode(STRICT) == STRICT
    assert check_tolerance_mode(NOISE_FLOOR) == NOISE_FLOOR
    with pytest.raises(InputError, match="tolerance mode: expected one of"):
        check_tolerance_mode("lenient")


def test_the_report_types_stay_importable_from_compare():
    assert compare_module.ParityReport is ParityReport


def test_worst_rows_put_failing_rows_first_and_the_json_form_counts_elements():
    ref = np.zeros((6, 3))
    cand = ref.copy()
    cand[4, 1] = 1.0  # out of tolerance
    cand[2, 0] = 1e-7  # within tolerance, the next largest error
    report = compare({"y": ref}, {"y": cand})
    assert not report and report.worst_rows(2) == [4, 2]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False
    assert data["outputs"][0]["elements"] == 18
