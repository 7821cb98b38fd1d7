import numpy as np
import pytest

from portanet.errors import ConversionError
from portanet.export.verify.compare import compare, compare_output
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER


def test_identical_outputs_pass_with_zero_error():
    a = np.linspace(0, 1, 10, dtype=np.float32).reshape(-1, 1)
    report = compare({"p": a}, {"p": a.copy()})
    assert report and report.passed
    assert report.outputs[0].max_abs == 0.0 and report.outputs[0].violations == 0


def test_figures_are_the_real_errors():
    ref = np.array([[1.0], [2.0], [4.0]])
    cand = np.array([[1.0], [2.5], [4.0]])
    out = compare_output("y", ref, cand, atol=1e-5, rtol=1e-4)
    assert out.max_abs == pytest.approx(0.5)
    assert out.mean_abs == pytest.approx(0.5 / 3)
    assert out.median_abs == 0.0
    assert out.max_rel == pytest.approx(0.25)
    assert out.violations == 1 and not out.passed


def test_every_failing_output_is_in_one_message():
    ref = {"a": np.zeros((4, 1)), "b": np.ones((4, 2)), "c": np.ones(3)}
    cand = {"a": np.full((4, 1), 1e-3), "b": np.ones((4, 2)), "c": np.full(3, 2.0)}
    report = compare(ref, cand)
    assert not report
    message = report.failure_message()
    assert "- a: max abs 0.001" in message and "- c: max abs 1" in message
    assert "- b:" not in message


def test_binary_flips_count_decisions_crossing_the_threshold():
    ref = np.array([[0.49], [0.51], [0.9]])
    cand = np.array([[0.51], [0.51], [0.9]])
    out = compare_output("p", ref, cand, task=BINARY_CLASSIFIER, threshold=0.5)
    assert (out.decisions, out.flips) == (3, 1)


def test_multiclass_flips_compare_argmax():
    ref = np.array([[0.6, 0.4], [0.2, 0.8]])
    cand = np.array([[0.4, 0.6], [0.2, 0.8]])
    out = compare_output("p", ref, cand, task=MULTICLASS_CLASSIFIER)
    assert (out.decisions, out.flips) == (2, 1)


def test_nan_in_one_side_only_fails_and_shape_mismatch_is_an_error():
    assert not compare_output("p", np.array([1.0]), np.array([np.nan])).passed
    assert compare_output("p", np.array([np.nan]), np.array([np.nan])).passed
    with pytest.raises(ConversionError, match="expected shape"):
        compare_output("p", np.zeros((2, 1)), np.zeros((2,)))


def test_per_output_tolerances_override_defaults():
    ref = {"a": np.zeros(2), "b": np.zeros(2)}
    cand = {"a": np.full(2, 1e-3), "b": np.full(2, 1e-3)}
    report = compare(ref, cand, tolerances={"a": (1e-2, 0.0)})
    assert [o.passed for o in report.outputs] == [True, False]
