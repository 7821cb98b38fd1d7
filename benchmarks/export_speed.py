"""Time one network's whole ``portanet export`` (gate included): this checkout against a git
revision, side by side, alternating old and new runs in child processes.

    python benchmarks/export_speed.py --baseline 1611941            # ResNet50 .h5, 2 pairs
    python benchmarks/export_speed.py --network MobileNetV2 --repeats 3 --baseline 1611941

The network is built with ``keras.applications.<NETWORK>(weights=None)`` and saved once; each
run is ``python -m portanet export`` in its own process (``benchmarks/applications.py``'s
``export``: wall time, CPU time (user + system, steadier on a shared machine) and the kernel's
peak RSS for that process via ``wait4``). Printed: one row per run, then the median of each
figure per code and the ratios baseline / current (above 1: the current code is faster or
leaner), and the peak RSS against the target ``8 × weights + 1.5 GB``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from applications import REPO, Run, baseline_tree, build, export  # noqa: E402


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REF", help="git revision to compare")
    parser.add_argument("--network", default="ResNet50", help="keras.applications name")
    parser.add_argument("--format", choices=["h5", "keras"], default="h5")
    parser.add_argument("--repeats", type=int, default=2, help="old/new pairs (default 2)")
    parser.add_argument(
        "--git-dir", default=str(REPO), help="repository holding REF (default: this checkout)"
    )
    args = parser.parse_args()
    print("| run | code | time s | CPU s | peak RSS GiB | max abs | result |")
    print("|---:|---|---:|---:|---:|---:|---|")
    runs: dict[str, list[Run]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="portanet-speed-") as scratch:
        folder = Path(scratch)
        base = baseline_tree(args.baseline, folder / "baseline", args.git_dir)
        source = folder / f"{args.network}.{args.format}"
        weights = build(args.network, source)
        for index in range(args.repeats):
            for label, code in (("baseline", base), ("current", REPO)):
                run = export(code, label, source, folder, [])
                runs[label].append(run)
                error = "-" if run.max_abs is None else f"{run.max_abs:.1e}"
                status = "ok" if run.returncode == 0 else f"exit {run.returncode}: {run.last_line}"
                name = f"{label} ({args.baseline})" if label == "baseline" else label
                print(
                    f"| {index + 1} | {name} | {run.seconds:.1f} | {run.cpu_seconds:.1f} | "
                    f"{run.peak_rss / 2**30:.2f} | {error} | {status} |",
                    flush=True,
                )
    old, new = runs["baseline"], runs["current"]
    print(f"\n{args.network} ({args.format}, {weights / 1e6:.0f} MB of weights), medians:")
    for field, unit in (("seconds", "s"), ("cpu_seconds", "CPU s"), ("peak_rss", "bytes")):
        before, after = _median(old, field), _median(new, field)
        print(
            f"  {field}: baseline {before:.4g} {unit}, current {after:.4g} {unit}, "
            f"ratio {before / after:.2f}x"
        )
    target = 8 * weights + 1.5e9
    peak = _median(new, "peak_rss")
    verdict = "within" if peak <= target else "over"
    print(
        f"  current peak RSS {peak / 1e9:.2f} GB, target 8 x weights + 1.5 GB = "
        f"{target / 1e9:.2f} GB: {verdict}"
    )


if __name__ == "__main__":
    main()
