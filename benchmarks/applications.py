"""Export keras.applications networks (``weights=None``) and print what each export cost.

For each network: build it at its default input size and save it (``.h5`` by default) in a child
process, then run ``python -m portanet export`` on it — the parity gate included — in another
child, one export at a time. Printed per network: the weights (MB), the export's wall time and
CPU time (user + system: steadier than wall time on a shared machine), the export process's
peak RSS (``os.wait4``, the kernel's figure for that one process), that peak as
a multiple of the weights, the gate's largest absolute error and the peak RSS the export
recorded at the end of each stage with its memory preflight's estimate (from ``--report``).

``--baseline REF`` also exports each network with the code of git revision ``REF`` (extracted
from this repository into a temporary folder) right after the current code's export, so the two
are measured side by side on the same machine, and prints the ratio of the times and peaks.

    python benchmarks/applications.py ResNet50 MobileNetV2 EfficientNetB0 ConvNeXtTiny
    python benchmarks/applications.py ResNet50 --baseline baa2b6a       # before / after
    python benchmarks/applications.py VGG16 --format keras --graph-cleanup onnxruntime
    python benchmarks/applications.py ResNet50 --library tf_keras --baseline aba2f9f  # Keras 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import importlib
import numpy as np
keras = importlib.import_module(sys.argv[3] if len(sys.argv) > 3 else "keras")
model = getattr(keras.applications, sys.argv[1])(weights=None)
model.save(sys.argv[2])
dtypes = [np.dtype(getattr(w.dtype, "name", w.dtype)) for w in model.weights]
weights = sum(int(np.prod(w.shape)) * d.itemsize for w, d in zip(model.weights, dtypes))
print(json.dumps({"weights": weights}))
"""


@dataclass(frozen=True)
class Run:
    """One ``portanet export`` child process."""

    code: str
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss: int
    max_abs: float | None
    last_line: str
    #: Peak RSS (GiB) at the end of each stage, as the export recorded it, and its estimate.
    stages: str = "-"


def build(name: str, path: Path, library: str = "keras") -> int:
    """Save ``<library>.applications.<name>(weights=None)`` at ``path`` (Keras 3, or tf-keras
    for a Keras 2 file); returns its weight bytes."""
    done = subprocess.run(
        [sys.executable, "-c", BUILD, name, str(path), library], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: could not build: {done.stderr.strip().splitlines()[-1:]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["weights"])


def export(code: Path, label: str, source: Path, folder: Path, extra: list[str]) -> Run:
    """``python -m portanet export`` with the package at ``code``; time and peak RSS of that
    process alone (``os.wait4``)."""
    target, report = folder / f"{label}.onnx", folder / f"{label}.json"
    env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "portanet", "export", str(source), "--output", str(target)]
    command += ["--report", str(report), *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, env=env, cwd=code, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        log.seek(0)
        lines = [line for line in log.read().decode(errors="replace").splitlines() if line]
    child.returncode = os.waitstatus_to_exitcode(status)
    max_abs, stages = None, "-"
    if report.exists():
        recorded = json.loads(report.read_text())
        outputs = recorded.get("outputs", [])
        max_abs = max((float(o["max_abs"]) for o in outputs), default=None)
        stages = _stage_peaks(recorded.get("export") or {})
    for stale in folder.glob(f"{label}.onnx*"):
        stale.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    last = (lines or [""])[-1]
    peak = usage.ru_maxrss * 1024
    return Run(label, child.returncode, seconds, cpu, peak, max_abs, last, stages)


def _stage_peaks(record: dict) -> str:
    """``load/convert/check/gate/write`` peak RSS so far (GiB) and the preflight's estimate."""
    peaks = "/".join(f"{s['peak_rss'] / 2**30:.2f}" for s in record.get("stages", []))
    estimate = record.get("memory_estimate")
    return f"{peaks} (est. {estimate / 2**30:.2f})" if estimate else peaks or "-"


def baseline_tree(ref: str, folder: Path, repository: str) -> Path:
    """The ``portanet`` package of git revision ``ref`` of ``repository``, extracted under
    ``folder``."""
    archive = subprocess.run(
        ["git", "-C", repository, "archive", ref, "portanet"], capture_output=True, check=True
    )
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def row(name: str, weights: int, run: Run) -> str:
    status = "ok" if run.returncode == 0 else f"exit {run.returncode}"
    error = "-" if run.max_abs is None else f"{run.max_abs:.1e}"
    return (
        f"| {name} | {run.code} | {weights / 1e6:.0f} | {run.seconds:.1f} | "
        f"{run.cpu_seconds:.1f} | "
        f"{run.peak_rss / 2**30:.2f} | {run.peak_rss / weights:.0f}x | {error} | {status} "
        f"| {run.stages} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+", help="keras.applications names, e.g. ResNet50")
    parser.add_argument("--format", choices=["h5", "keras"], default="h5")
    parser.add_argument(
        "--library", choices=["keras", "tf_keras"], default="keras", help="who builds and saves"
    )
    parser.add_argument("--baseline", metavar="REF", help="also export with git revision REF")
    parser.add_argument(
        "--git-dir", default=str(REPO), help="repository holding REF (default: this checkout)"
    )
    parser.add_argument("--atol", help="the gate's atol (default: export's own)")
    parser.add_argument("--noise-floor", action="store_true", help="gate in noise-floor mode")
    parser.add_argument(
        "--graph-cleanup", choices=["tf2onnx", "onnxruntime"], help="export's --graph-cleanup"
    )
    args = parser.parse_args()
    extra = ["--atol", args.atol] if args.atol else []
    extra += ["--tolerance-mode", "noise-floor"] if args.noise_floor else []
    current_extra = extra + (["--graph-cleanup", args.graph_cleanup] if args.graph_cleanup else [])
    print(
        "| network | code | weights MB | time s | CPU s | peak RSS GiB | RSS/weights | max abs "
        "| result | GiB after load/convert/check/gate/write |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    with tempfile.TemporaryDirectory(prefix="portanet-apps-") as scratch:
        folder = Path(scratch)
        base = None
        if args.baseline:
            base = baseline_tree(args.baseline, folder / "baseline", args.git_dir)
        for name in args.networks:
            source = folder / f"{name}.{args.format}"
            weights = build(name, source, args.library)
            current = export(REPO, "current", source, folder, current_extra)
            print(row(name, weights, current), flush=True)
            if current.returncode != 0:
                print(f"  {name}: {current.last_line}", file=sys.stderr)
            if base is not None:
                before = export(base, f"baseline-{args.baseline}", source, folder, extra)
                print(row(name, weights, before), flush=True)
                print(
                    f"|  | ratio baseline/current |  | {before.seconds / current.seconds:.2f}x "
                    f"| {before.cpu_seconds / current.cpu_seconds:.2f}x "
                    f"| {before.peak_rss / current.peak_rss:.2f}x |  |  |  |  |",
                    flush=True,
                )
            source.unlink()


if __name__ == "__main__":
    main()
