"""What the parity gate found, per output and in all (:class:`ParityReport`), with the tolerance
modes it judged by; computed by :mod:`portanet.export.verify.compare`.

A :class:`ParityReport` carries max/mean/median absolute and max relative error per output
(:class:`OutputReport`), where the largest error sits (:class:`Worst`: row and element, both
values), the number of classifier decisions that flip, and — when one was measured — the noise
floor. It is truthy only when every output passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portanet.errors import InputError

STRICT, NOISE_FLOOR = "strict", "noise-floor"
TOLERANCE_MODES = (STRICT, NOISE_FLOOR)
#: An error within this factor of the noise at its element is the model's own sensitivity.
NOISE_FACTOR = 4.0
#: What relative errors are relative to.
REL_BASIS = "max(|reference|, atol)"
#: Rows listed per output (worst first).
LISTED_ROWS = 50


def check_tolerance_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`TOLERANCE_MODES`, else an :class:`InputError`."""
    if mode not in TOLERANCE_MODES:
        raise InputError(f"tolerance mode: expected one of {list(TOLERANCE_MODES)}, got {mode!r}")
    return mode


@dataclass
class Worst:
    """Where an output's worst error sits — the element furthest out of tolerance, or the
    largest error when all are within — as its row (sample) and the element inside it."""

    row: int
    element: tuple[int, ...]
    reference: float
    candidate: float
    noise: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "row": self.row,
            "element": list(self.element),
            "reference": self.reference,
            "candidate": self.candidate,
            "noise": self.noise,
        }


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
    worst: Worst | None = None
    #: Largest noise measured over the output's elements (``None``: not measured).
    noise_floor: float | None = None
    #: Violations within :data:`NOISE_FACTOR` × the noise at their element.
    explained: int = 0
    #: Rows holding violations, furthest out of tolerance first (at most LISTED_ROWS).
    failing_rows: list[int] = field(default_factory=list)
    #: How many rows hold violations.
    failing_row_count: int = 0
    #: Rows holding violations the noise floor does not explain (at most LISTED_ROWS × 5).
    unexplained_rows: list[int] = field(default_factory=list)
    #: Rows with the largest errors, violations or not, worst first (at most LISTED_ROWS).
    top_rows: list[int] = field(default_factory=list)
    tolerance_mode: str = STRICT

    @property
    def unexplained(self) -> int:
        """Violations that the measured noise floor does not account for."""
        return self.violations - self.explained

    @property
    def passed(self) -> bool:
        """Strict: every element within ``atol + rtol·|ref|``; noise-floor: every element
        beyond that is within :data:`NOISE_FACTOR` × its measured noise."""
        return self.violations == 0 if self.tolerance_mode == STRICT else self.unexplained == 0

    @property
    def noise_ratio(self) -> float | None:
        """The largest error over the noise floor (``None`` when no noise was measured)."""
        if self.noise_floor is None:
            return None
        return (
            float("inf")
            if self.noise_floor == 0 and self.max_abs > 0
            else (0.0 if self.max_abs == 0 else self.max_abs / self.noise_floor)
        )

    def verdict(self) -> str:
        """What the comparison says about this output, in one sentence."""
        if not self.violations:
            return "within tolerance"
        rows = (
            f"{self.failing_row_count} rows, worst first: "
            + ", ".join(map(str, self.failing_rows[:10]))
            + (" …" if self.failing_row_count > 10 else "")
        )
        if self.noise_floor is None:
            return f"out of tolerance (no noise floor measured) on {rows}"
        if self.unexplained == 0:
            tail = (
                "accepted in noise-floor mode"
                if self.tolerance_mode == NOISE_FLOOR
                else "refused in strict mode; the noise-floor tolerance mode accepts it"
            )
            return (
                f"every element out of tolerance is within {NOISE_FACTOR:g}× the noise "
                f"floor: the model's own float32 sensitivity, not a conversion fault, on "
                f"{rows}; {tail}"
            )
        shown = ", ".join(map(str, self.unexplained_rows[:10])) + (
            " …" if len(self.unexplained_rows) > 10 else ""
        )
        return (
            f"{self.unexplained} of {self.violations} elements out of tolerance are beyond "
            f"{NOISE_FACTOR:g}× the noise floor: a conversion fault, not the model's "
            f"sensitivity (rows {shown})"
        )

    def describe_failure(self, where: Any = None) -> str:
        """Lines saying what was expected and what was got, and where (``where(row)`` names
        the gate input a row belongs to)."""
        line = (
            f"- {self.name}: max abs {self.max_abs:.3g} (atol {self.atol:g}), "
            f"max rel {self.max_rel:.3g} (rtol {self.rtol:g}, relative to {REL_BASIS}), "
            f"{self.violations} of {self.elements} elements out of tolerance"
        )
        if self.worst is not None:
            w = self.worst
            place = f" ({where(w.row)})" if where is not None else ""
            line += (
                f"; worst at row {w.row}{place}, element {list(w.element)}: reference "
                f"{w.reference:.6g}, candidate {w.candidate:.6g}"
            )
        if self.noise_floor is not None:
            at = (
                f" ({self.worst.noise:.3g} at that element)"
                if self.worst is not None and self.worst.noise is not None
                else ""
            )
            line += f"\n  noise floor {self.noise_floor:.3g}{at}: {self.verdict()}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = {
            k: getattr(self, k)
            for k in (
                "name",
                "elements",
                "max_abs",
                "mean_abs",
                "median_abs",
                "max_rel",
                "atol",
                "rtol",
                "violations",
                "decisions",
                "flips",
                "noise_floor",
                "explained",
                "failing_rows",
                "failing_row_count",
                "tolerance_mode",
            )
        }
        data["rel_basis"] = REL_BASIS
        data["worst"] = self.worst.to_dict() if self.worst is not None else None
        data["noise_ratio"] = self.noise_ratio
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
    tolerance_mode: str = STRICT
    #: How the noise floor was measured (methods, factor, what could not be done).
    noise: dict[str, Any] | None = None
    #: The gate's inputs as consecutive row ranges: (label, first row, row count).
    batches: list[tuple[str, int, int]] = field(default_factory=list)
    #: True when no real rows were given: every input was made up.
    synthetic: bool = False

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

    def where(self, row: int) -> str:
        """The gate input a row belongs to: ``"random batch of 7, its row 3"``."""
        for label, start, count in self.batches:
            if start <= row < start + count:
                return f"{label}, its row {row - start}"
        return f"row {row}"

    def worst_rows(self, limit: int) -> list[int]:
        """Rows to look at first: rows with violations (worst first), then the rows with the
        largest errors; at most ``limit``."""
        rows: list[int] = []
        for output in sorted(self.outputs, key=lambda o: -o.violations):
            rows.extend(r for r in output.failing_rows if r not in rows)
        for rank in range(LISTED_ROWS):
            for output in self.outputs:
                if rank < len(output.top_rows) and output.top_rows[rank] not in rows:
                    rows.append(output.top_rows[rank])
        return rows[:limit]

    def failure_message(self) -> str:
        """Every failing output in one message, where its worst error sits, the noise floor and
        the layerwise verdict."""
        lines = [o.describe_failure(self.where) for o in self.failures]
        if self.layerwise is not None:
            lines.append(self.layerwise.summary())
        if self.synthetic:
            lines.append("inputs were synthetic; real rows as gate data give a stronger proof")
        return (
            f"Keras and ONNX outputs differ beyond tolerance ({self.tolerance_mode} mode):\n"
            + "\n".join(lines)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also stored as the ``portanet.parity`` metadata)."""
        data = {
            "passed": self.passed,
            "samples": self.samples,
            "inputs_from": self.inputs_from,
            "synthetic": self.synthetic,
            "tolerance_mode": self.tolerance_mode,
            "noise": self.noise,
            "batches": [{"label": b[0], "start": b[1], "rows": b[2]} for b in self.batches],
            "outputs": [o.to_dict() for o in self.outputs],
            **self.extra,
        }
        if self.layerwise is not None:
            data["layerwise"] = self.layerwise.to_dict()
        return data
