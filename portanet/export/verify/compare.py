"""Compare reference outputs (Keras) with candidate outputs (ONNX) and report the numbers.

A :class:`ParityReport` carries max/mean/median absolute and max relative error per output, the
number of classifier decisions that flip, and is truthy only when every output passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import ConversionError, InputError
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
_TINY = np.finfo(np.float64).tiny


@dataclass
class OutputReport:
    """Error figures for one output tensor."""

    name: str
    elements: int
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    atol: float
    rtol: float
    violations: int
    decisions: int | None = None
    flips: int | None = None

    @property
    def passed(self) -> bool:
        """True when every element satisfies ``|ref - cand| <= atol + rtol * |ref|``."""
        return self.violations == 0

    def describe_failure(self) -> str:
        """One line saying what was expected and what was got."""
        return (f"- {self.name}: max abs {self.max_abs:.3g} (atol {self.atol:g}), "
                f"max rel {self.max_rel:.3g} (rtol {self.rtol:g}), "
                f"{self.violations} of {self.elements} elements out of tolerance")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = {k: getattr(self, k) for k in (
            "name", "elements", "max_abs", "mean_abs", "median_abs", "max_rel", "atol", "rtol",
            "violations", "decisions", "flips")}
        data["passed"] = self.passed
        return data


@dataclass
class ParityReport:
    """The result of one comparison: per-output figures; truthy only when everything passed."""

    outputs: list[OutputReport]
    samples: int
    inputs_from: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: Per-layer comparison (``portanet.export.verify.layerwise.LayerwiseReport``) when one was run.
    layerwise: Any = None

    @property
    def passed(self) -> bool:
        """True when every output passed."""
        return all(o.passed for o in self.outputs)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[OutputReport]:
        """The outputs that failed."""
        return [o for o in self.outputs if not o.passed]

    @property
    def max_abs(self) -> float:
        """Largest absolute error over all outputs."""
        return max((o.max_abs for o in self.outputs), default=0.0)

    def failure_message(self) -> str:
        """Every failing output in one message."""
        lines = [o.describe_failure() for o in self.failures]
        if self.layerwise is not None:
            lines.append(self.layerwise.summary())
        return "Keras and ONNX outputs differ beyond tolerance:\n" + "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also stored as the ``portanet.parity`` metadata)."""
        data = {"passed": self.passed, "samples": self.samples, "inputs_from": self.inputs_from,
                "outputs": [o.to_dict() for o in self.outputs], **self.extra}
        if self.layerwise is not None:
            data["layerwise"] = self.layerwise.to_dict()
        return data


def _decisions(ref: np.ndarray, cand: np.ndarray, task: str | None,
               threshold: float) -> tuple[int | None, int | None]:
    if task == BINARY_CLASSIFIER and ref.ndim >= 1 and (ref.ndim == 1 or ref.shape[-1] == 1):
        return ref.size, int(np.count_nonzero((ref >= threshold) != (cand >= threshold)))
    if task == MULTICLASS_CLASSIFIER and ref.ndim >= 2 and ref.shape[-1] > 1:
        r, c = ref.argmax(axis=-1), cand.argmax(axis=-1)
        return r.size, int(np.count_nonzero(r != c))
    return None, None


def compare_output(name: str, reference: np.ndarray, candidate: np.ndarray, *,
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   task: str | None = None, threshold: float = 0.5) -> OutputReport:
    """Compare one output. Shapes must match exactly; NaNs must sit in the same places."""
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.shape != cand.shape:
        raise ConversionError(f"output {name!r}: expected shape {ref.shape} from the reference, "
                              f"got {cand.shape} from the candidate")
    ref64 = ref.astype(np.float64, copy=False)
    cand64 = cand.astype(np.float64, copy=False)
    diff = np.abs(ref64 - cand64)
    both_nan = np.isnan(ref64) & np.isnan(cand64)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rel = diff / np.maximum(np.abs(ref64), _TINY)
    rel = np.where(diff == 0, 0.0, rel)
    violations = int(np.count_nonzero(diff > atol + rtol * np.abs(np.nan_to_num(ref64))))
    decisions, flips = _decisions(ref64, cand64, task, threshold)
    empty = diff.size == 0
    return OutputReport(
        name=name, elements=int(diff.size),
        max_abs=0.0 if empty else float(diff.max()),
        mean_abs=0.0 if empty else float(diff.mean()),
        median_abs=0.0 if empty else float(np.median(diff)),
        max_rel=0.0 if empty else float(rel.max()),
        atol=atol, rtol=rtol, violations=violations, decisions=decisions, flips=flips)


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
            atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
            tolerances: Mapping[str, tuple[float, float]] | None = None,
            task: str | None = None, threshold: float = 0.5,
            inputs_from: str = "") -> ParityReport:
    """Compare every output of ``reference`` with the same-named output of ``candidate``.

    ``tolerances`` maps an output name to its own ``(atol, rtol)``; others use the defaults.
    """
    missing = [n for n in reference if n not in candidate]
    if missing:
        raise InputError(f"expected outputs {sorted(reference)} in the candidate, "
                         f"got {sorted(candidate)} (missing {missing})")
    tolerances = tolerances or {}
    reports = []
    samples = 0
    for name, ref in reference.items():
        a, r = tolerances.get(name, (atol, rtol))
        reports.append(compare_output(name, ref, candidate[name], atol=a, rtol=r,
                                      task=task, threshold=threshold))
        samples = max(samples, int(np.shape(ref)[0]) if np.ndim(ref) else 1)
    return ParityReport(reports, samples, inputs_from)

