"""Memory preflight and the export's own resource record (standard library only).

Before converting, :func:`check_memory` estimates the conversion's peak from the model's weights
(:func:`estimate_peak`) and compares it with the memory this process may still use
(:func:`available_memory`: ``MemAvailable`` from ``/proc/meminfo``, bounded by the cgroup's
limit). A model that would not fit is refused with :class:`~portanet.errors.ConversionError`
(exit 3) naming both figures and ``--no-memory-check``, instead of being killed by the kernel
half way. :func:`peak_rss` is what the export records about itself.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from portanet.errors import ConversionError

#: Extra peak memory of a conversion per byte of weights (trace, frozen graph, tf2onnx graph and
#: optimizers, ONNX proto, check), by graph clean-up, measured on keras.applications networks
#: (docs/conversion.md), rounded up.
BYTES_PER_WEIGHT_BYTE = {"tf2onnx": 32, "onnxruntime": 18}
#: Extra peak memory of a conversion per byte of weights lifted out of the graph and put back by
#: onnxruntime's clean-up (portanet/export/convert/lifted.py: the weights read back into the
#: graph, onnxruntime's folded kernels), measured the same way (ConvNeXtXLarge: 2.4), rounded up.
LIFTED_BYTES_PER_WEIGHT_BYTE = 3
#: Extra peak memory of a conversion whatever its weights (TensorFlow's tracing and grappler).
FIXED_BYTES = 768 * 2**20


def estimate_peak(
    weight_bytes: int, cleanup: str = "tf2onnx", streamed: int = 0, lifted: int = 0
) -> int:
    """Bytes a conversion of a model with ``weight_bytes`` of weights adds to this process;
    ``streamed`` of them go to an external-data file without a copy in any graph (counted
    once), ``lifted`` of them stay out of the conversion and are put back by onnxruntime's
    clean-up (:data:`LIFTED_BYTES_PER_WEIGHT_BYTE` each)."""
    in_graph = max(0, int(weight_bytes) - int(streamed) - int(lifted))
    return (
        FIXED_BYTES
        + BYTES_PER_WEIGHT_BYTE[cleanup] * in_graph
        + int(streamed)
        + LIFTED_BYTES_PER_WEIGHT_BYTE * int(lifted)
    )


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1), ``None`` if unlimited."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of ``MemAvailable`` and the room under
    the cgroup limit; ``None`` when neither can be read (then nothing is refused)."""
    known = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(known) if known else None


def check_memory(
    weight_bytes: int,
    source: str | os.PathLike[str],
    cleanup: str = "tf2onnx",
    streamed: int = 0,
    lifted: int = 0,
) -> int:
    """Refuse (exit 3) a conversion whose estimated peak exceeds the available memory; returns
    the estimate in bytes (arguments as for :func:`estimate_peak`)."""
    estimate = estimate_peak(weight_bytes, cleanup, streamed, lifted)
    available = available_memory()
    if available is not None and estimate > available:
        raise ConversionError(
            f"{source}: converting a model with {weight_bytes / 1e6:.0f} MB of weights needs "
            f"about {estimate / 1e9:.1f} GB of memory (estimate), expected at most the "
            f"{available / 1e9:.1f} GB available; free memory or pass --no-memory-check to "
            f"try anyway"
        )
    return estimate


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (``getrusage``; Linux counts KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def release_memory() -> bool:
    """Collect unreachable objects (TensorFlow graphs and tf2onnx's graph hold reference cycles)
    and hand the freed heap back to the system (glibc's ``malloc_trim``), so the next stage's
    allocations do not stack on a converted model's garbage. Returns True when the heap was
    trimmed (glibc), False elsewhere (then only the collection ran)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)  # its result only says whether memory was returned, not whether it worked
    return True
