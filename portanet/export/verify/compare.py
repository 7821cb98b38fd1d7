"""Compare reference outputs (Keras) with candidate outputs (ONNX) and report the numbers.

A :class:`ParityReport` carries max/mean/median absolute and max relative error per output, where
the largest error sits (row and element, both values), the number of classifier decisions that
flip, and — when one was measured (:mod:`portanet.export.verify.noise`) — the *noise floor*: how
far the reference moves under perturbations that are not errors. It is truthy only when every
output passed (the report types and the tolerance modes live in
:mod:`portanet.export.verify.parity` and are importable from here too).

Relative error is measured against ``max(|reference|, atol)``: near-zero references do not turn a
tiny absolute difference into an enormous ratio.

Tolerance modes: ``strict`` (the default) passes an output only when every element satisfies
``|ref - cand| <= atol + rtol·|ref|``. ``noise-floor`` also accepts an element beyond that when
the model's own sensitivity explains it: its error is within :data:`NOISE_FACTOR` times the noise
measured at that element, or its row demonstrably is sensitive (the reference alone moves beyond
tolerance there) and the error is within the output's noise floor. Such elements are reported
with the rows where they happen; an error far above the noise floor still fails: that is a
conversion fault.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from portanet.errors import ConversionError, InputError
from portanet.export.verify.parity import (
    LISTED_ROWS,
    NOISE_FACTOR,
    NOISE_FLOOR,
    REL_BASIS,
    STRICT,
    TOLERANCE_MODES,
    OutputReport,
    ParityReport,
    Worst,
    check_tolerance_mode,
)
from portanet.options import DEFAULT_ATOL, DEFAULT_RTOL
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER

#: The report types and modes stay importable from here (where they were defined first).
__all__ = [
    "LISTED_ROWS",
    "NOISE_FACTOR",
    "NOISE_FLOOR",
    "REL_BASIS",
    "STRICT",
    "TOLERANCE_MODES",
    "OutputReport",
    "ParityReport",
    "Worst",
    "check_tolerance_mode",
    "compare_output",
    "compare",
]


def _decisions(
    ref: np.ndarray, cand: np.ndarray, task: str | None, threshold: float
) -> tuple[int | None, int | None]:
    if task == BINARY_CLASSIFIER and ref.ndim >= 1 and (ref.ndim == 1 or ref.shape[-1] == 1):
        return ref.size, int(np.count_nonzero((ref >= threshold) != (cand >= threshold)))
    if task == MULTICLASS_CLASSIFIER and ref.ndim >= 2 and ref.shape[-1] > 1:
        r, c = ref.argmax(axis=-1), cand.argmax(axis=-1)
        return r.size, int(np.count_nonzero(r != c))
    return None, None


def compare_output(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    task: str | None = None,
    threshold: float = 0.5,
    noise: np.ndarray | None = None,
    tolerance_mode: str = STRICT,
) -> OutputReport:
    """Compare one output. Shapes must match exactly; NaNs must sit in the same places.

    ``noise`` (shaped like the reference) is how far the reference moved under perturbations
    that are not errors (:mod:`portanet.export.verify.noise`); it decides which violations are
    the model's own sensitivity."""
    check_tolerance_mode(tolerance_mode)
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.shape != cand.shape:
        raise ConversionError(
            f"output {name!r}: expected shape {ref.shape} from the reference, "
            f"got {cand.shape} from the candidate"
        )
    ref64 = ref.astype(np.float64, copy=False)
    cand64 = cand.astype(np.float64, copy=False)
    diff = np.abs(ref64 - cand64)
    both_nan = np.isnan(ref64) & np.isnan(cand64)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    magnitude = np.abs(np.nan_to_num(ref64))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rel = diff / np.maximum(magnitude, max(atol, np.finfo(np.float64).tiny))
    rel = np.where(diff == 0, 0.0, rel)
    beyond = diff > atol + rtol * magnitude
    violations = int(np.count_nonzero(beyond))
    decisions, flips = _decisions(ref64, cand64, task, threshold)
    report = OutputReport(
        name=name,
        elements=int(diff.size),
        max_abs=0.0,
        mean_abs=0.0,
        median_abs=0.0,
        max_rel=0.0,
        atol=atol,
        rtol=rtol,
        violations=violations,
        decisions=decisions,
        flips=flips,
        tolerance_mode=tolerance_mode,
    )
    if diff.size == 0:
        return report
    report.max_abs, report.mean_abs = float(diff.max()), float(diff.mean())
    report.median_abs, report.max_rel = float(np.median(diff)), float(rel.max())
    noise64 = None
    if noise is not None:
        noise64 = np.nan_to_num(np.abs(np.asarray(noise, dtype=np.float64)), nan=np.inf)
        if noise64.shape != diff.shape:
            raise ConversionError(
                f"output {name!r}: expected noise of shape {diff.shape}, got {noise64.shape}"
            )
        report.noise_floor = float(noise64.max())
        # An element is the model's own sensitivity when its error is within NOISE_FACTOR ×
        # the noise measured there, or when its row demonstrably is sensitive (Keras moves
        # beyond tolerance there by itself) and the error is within the output's noise floor.
        rows_moving = (
            (noise64 > atol + rtol * magnitude).reshape(len(diff), -1).any(axis=1)
            if diff.ndim
            else np.asarray(noise64 > atol + rtol * magnitude)
        )
        sensitive = (
            rows_moving.reshape((-1,) + (1,) * (diff.ndim - 1)) if diff.ndim else rows_moving
        )
        explained = beyond & (
            (diff <= NOISE_FACTOR * noise64) | (sensitive & (diff <= report.noise_floor))
        )
        report.explained = int(np.count_nonzero(explained))
        if diff.ndim and report.explained < violations:
            open_rows = (beyond & ~explained).reshape(len(diff), -1).any(axis=1)
            report.unexplained_rows = [int(r) for r in np.flatnonzero(open_rows)[: LISTED_ROWS * 5]]
    excess = diff - (atol + rtol * magnitude)  # how far each element is out of tolerance
    flat = int(np.argmax(excess if violations else diff))
    position = np.unravel_index(flat, diff.shape) if diff.ndim else ()
    report.worst = Worst(
        int(position[0]) if position else 0,
        tuple(int(i) for i in position[1:]),
        float(ref64.reshape(-1)[flat]),
        float(cand64.reshape(-1)[flat]),
        None if noise64 is None else float(noise64.reshape(-1)[flat]),
    )
    if diff.ndim and len(diff):
        per_row = diff.reshape(len(diff), -1).max(axis=1)
        order = np.argsort(-per_row, kind="stable")
        report.top_rows = [int(r) for r in order[:LISTED_ROWS]]
        failing = np.asarray(np.asarray(beyond).reshape(len(diff), -1).any(axis=1))
        row_excess = excess.reshape(len(diff), -1).max(axis=1)
        report.failing_rows = [
            int(r) for r in np.argsort(-row_excess, kind="stable") if failing[r]
        ][:LISTED_ROWS]
        report.failing_row_count = int(np.count_nonzero(failing))
    return report


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    tolerances: Mapping[str, tuple[float, float]] | None = None,
    task: str | None = None,
    threshold: float = 0.5,
    inputs_from: str = "",
    noise: Mapping[str, np.ndarray] | None = None,
    tolerance_mode: str = STRICT,
) -> ParityReport:
    """Compare every output of ``reference`` with the same-named output of ``candidate``.

    ``tolerances`` maps an output name to its own ``(atol, rtol)``; others use the defaults.
    ``noise`` maps output names to the reference's measured noise (see :func:`compare_output`).
    """
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise InputError(
            f"expected outputs {sorted(reference)} in the candidate, "
            f"got {sorted(candidate)} (missing {missing})"
        )
    tolerances = tolerances or {}
    reports = []
    samples = 0
    for name, ref in reference.items():
        a, r = tolerances.get(name, (atol, rtol))
        reports.append(
            compare_output(
                name,
                ref,
                candidate[name],
                atol=a,
                rtol=r,
                task=task,
                threshold=threshold,
                noise=(noise or {}).get(name),
                tolerance_mode=tolerance_mode,
            )
        )
        samples = max(samples, int(np.shape(ref)[0]) if np.ndim(ref) else 1)
    return ParityReport(reports, samples, inputs_from, tolerance_mode=tolerance_mode)
