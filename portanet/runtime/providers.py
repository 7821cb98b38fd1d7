"""Choosing onnxruntime execution providers and thread counts for this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from portanet.errors import InputError

ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def resolve(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Turn ``"auto"``, an alias (``cpu``, ``cuda``, ``tensorrt``) or a list into provider names.

    ``auto`` keeps GPU providers only where they are available; an explicit choice is kept as
    asked (plus CPU as the fallback), so a missing one can be detected after the session starts.
    """
    if isinstance(requested, str):
        if requested == "auto":
            chosen = [p for p in _AUTO_ORDER if p in available]
            return chosen or ["CPUExecutionProvider"]
        requested = [requested]
    names: list[str] = []
    for item in requested:
        name = ALIASES.get(item.lower(), item) if isinstance(item, str) else None
        if not name or not name.endswith("ExecutionProvider"):
            raise InputError(
                f"provider: expected auto, {', '.join(ALIASES)} or an onnxruntime "
                f"provider name, got {item!r}"
            )
        if name not in names:
            names.append(name)
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def session_options(
    threads: int | None = None, *, memory_arena: bool = True, log_severity: int = 4
) -> Any:
    """onnxruntime ``SessionOptions`` as portanet runs every session: ``threads`` intra-op
    threads (default :func:`usable_cpus`) that sleep when idle instead of spinning (spinning
    threads steal the cores a reader thread or other processes need: on 2 shared cores a 1M-row
    predict ran 4× slower with spinning; benchmarks/run.py), one inter-op thread, and only
    onnxruntime's messages of ``log_severity`` and above (4: fatal; portanet reports errors
    itself, in one line)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads and threads > 0 else usable_cpus()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = memory_arena
    options.log_severity_level = log_severity
    return options


def _cgroup_quota() -> int | None:
    """Whole CPUs granted by a cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us`` limit, if any."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, int(int(text[0]) / int(text[1])))
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return max(1, quota // period) if quota > 0 else None
    except (OSError, ValueError):
        return None
