"""An export's own record of itself: its stages, each one's wall time and the process's peak
memory when it ended (:class:`StageRecord`), told to a caller as each stage starts
(:class:`Timeline`) and summed into the run record that the JSON report and the ONNX metadata
(``portanet.export``) hold (:func:`run_record`).

Export side, but free of TensorFlow: only the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portanet.export.preflight import peak_rss

#: The stages of an export, in order, and what ``on_stage`` is told as each starts.
STAGES = {
    "load": "loading the Keras model",
    "convert": "converting to ONNX",
    "check": "checking the ONNX model",
    "gate": "running the parity gate",
    "write": "writing",
}


@dataclass(frozen=True)
class StageRecord:
    """One stage as it ran: its name, wall time and the process's peak RSS when it ended."""

    name: str
    seconds: float
    peak_rss: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the metadata and the ``--report`` file hold)."""
        return {"stage": self.name, "seconds": round(self.seconds, 3), "peak_rss": self.peak_rss}


def run_record(stages: list[StageRecord], estimate: int | None) -> dict[str, Any]:
    """The run record of ``stages`` so far: total seconds, peak RSS (bytes), the memory
    preflight's ``estimate`` (bytes, ``None`` when not checked) and each stage, JSON-ready."""
    return {
        "seconds": round(sum(s.seconds for s in stages), 3),
        "peak_rss": max((s.peak_rss for s in stages), default=peak_rss()),
        "memory_estimate": estimate,
        "stages": [s.to_dict() for s in stages],
    }


class Timeline:
    """Tells ``on_stage`` each stage as it starts and records it when it ends."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        self.on_stage = on_stage or (lambda label: None)
        self.records: list[StageRecord] = []
        self._started = 0.0

    def start(self, name: str) -> None:
        self.on_stage(STAGES[name])
        self._started = time.perf_counter()
        self._name = name

    def end(self) -> None:
        seconds = time.perf_counter() - self._started
        self.records.append(StageRecord(self._name, seconds, peak_rss()))
