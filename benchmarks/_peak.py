"""Run ``portanet`` in this process and print its peak resident memory when it exits.

    python benchmarks/_peak.py optimize model.onnx --data rows.npy ...

The last line on stderr is ``peak_rss_mb=<MB>`` (``VmHWM`` of this process: the optimizer
and every library it loaded, TensorFlow included when ``--source`` is given).
"""

from __future__ import annotations

import atexit
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _report() -> None:
    # VmHWM is this process image's own high-water mark; ru_maxrss would also count the
    # parent's resident memory at fork time (a parent with TensorFlow loaded reads as ~2 GB).
    status = Path("/proc/self/status")
    if status.exists():
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        peak = int(line.split()[1]) / 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stderr.write(f"\npeak_rss_mb={peak:.0f}\n")


if __name__ == "__main__":
    atexit.register(_report)
    from portanet.cli.app import run

    sys.exit(run(sys.argv[1:]))
