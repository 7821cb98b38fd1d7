"""Alternating paired timing: a speed-up counts only beyond the measured spread."""

from __future__ import annotations

import time

from portanet.optimize.timing import MARGIN, compare


def _sleeper(seconds: float):
    return lambda: time.sleep(seconds)


def test_an_identical_callable_is_no_real_gain_and_a_twice_faster_one_is():
    found = compare(
        {"base": _sleeper(0.004), "same": _sleeper(0.004), "faster": _sleeper(0.002)},
        base="base",
        seconds=0.3,
        min_rounds=6,
        max_rounds=10,
    )
    low, mid, high = found.speedup("same")
    assert low <= mid <= high and not low > 1 + MARGIN
    low, mid, _ = found.speedup("faster")
    assert low > 1 + MARGIN and 1.5 < mid < 2.5
    assert len(found.ratios["same"]) >= 6 and all(len(v) >= 12 for v in found.samples.values())


def test_undecided_candidates_get_more_slices():
    """A 6 % faster callable sits on the margin: rounds continue past the minimum."""
    found = compare(
        {"base": _sleeper(0.0030), "close": _sleeper(0.00283)},
        base="base",
        seconds=0.12,
        min_rounds=3,
        max_rounds=9,
    )
    rounds = len(found.ratios["close"])
    assert 3 <= rounds <= 9
    assert found.decided("close") or rounds == 9
