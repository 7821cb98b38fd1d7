"""portanet's runtime benchmarks: every figure is a ratio against its raw baseline, measured in
the same run on the same machine.

    .venv/bin/python benchmarks/run.py            # full run (1M / 4M rows; a few minutes)
    .venv/bin/python benchmarks/run.py --rows 200000 --skip-keras

Needs `pip install -e ".[export]"` for the Keras rows (or --skip-keras).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_ONNX = REPO / "models" / "pima_mlp.onnx"
MODEL_H5 = REPO / "models" / "pima_mlp.h5"
sys.path.insert(0, str(REPO))


def best_of(func: Callable[[], object], repeats: int, inner: int = 1) -> float:
    """Fastest mean seconds per call over ``repeats`` timings of ``inner`` calls (after warm-up)."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            func()
        times.append((time.perf_counter() - start) / inner)
    return min(times)


def paired(ours: Callable[[], object], base: Callable[[], object], repeats: int,
           inner: int = 1) -> tuple[float, float]:
    """Best-of timings of two functions measured alternately, so that drifts of the machine
    (frequency, neighbours) hit both sides alike."""
    ours(), base()
    best_ours = best_base = float("inf")
    for _ in range(repeats):
        for func, which in ((ours, 0), (base, 1)):
            start = time.perf_counter()
            for _ in range(inner):
                func()
            elapsed = (time.perf_counter() - start) / inner
            if which == 0:
                best_ours = min(best_ours, elapsed)
            else:
                best_base = min(best_base, elapsed)
    return best_ours, best_base


def median_of(func: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls (for subprocess timings, which vary more)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pima_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Pima-shaped rows drawn inside the real data's per-column range."""
    from portanet.reference.data import load_pima

    real = load_pima().features
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(real.min(0), real.max(0), size=(rows, 8)), 3).astype(np.float32)


def write_csv(path: Path, rows: int) -> None:
    """A Pima-shaped CSV with a header, written in chunks (flat memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from portanet.reference.data import PIMA_FEATURES

    step = 500_000
    with pacsv.CSVWriter(path, pa.schema([(n, pa.float32()) for n in PIMA_FEATURES])) as writer:
        for start in range(0, rows, step):
            block = pima_rows(min(step, rows - start), seed=start)
            writer.write_table(pa.table({n: block[:, i] for i, n in enumerate(PIMA_FEATURES)}))


_RSS_PROBE = ("import os, subprocess, sys\n"
              "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
              "_, status, usage = os.wait4(p.pid, 0)\n"
              "print(status, usage.ru_maxrss)\n")


def peak_rss_mib(argv: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, its own peak RSS in MiB).

    Linux carries a parent's RSS high-water mark into a forked child's ``ru_maxrss``, so the
    command is started from a small intermediate Python process, not from this (large) one.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RSS_PROBE, *argv], capture_output=True,
                          text=True, check=True)
    status, kib = map(int, done.stdout.split())
    if status != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-500:]}")
    return time.perf_counter() - start, kib / 1024


class Table:
    """Rows of: what, portanet, baseline, ratio, target."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, ours: float, base: float, unit: str, target: str,
            higher_is_better: bool = False) -> None:
        ratio = base / ours if higher_is_better else ours / base
        scale, suffix = {"s": (1, "s"), "ms": (1e3, "ms"), "us": (1e6, "µs"),
                         "MiB": (1, "MiB")}[unit]
        self.rows.append((what, f"{ours * scale:.2f} {suffix}", f"{base * scale:.2f} {suffix}",
                          f"{ratio:.2f}×", target))
        print(f"  {what}: {self.rows[-1][1]} vs {self.rows[-1][2]} → {self.rows[-1][3]} "
              f"({target})", flush=True)

    def show(self) -> None:
        headers = ("measure", "portanet", "baseline", "ratio", "target")
        widths = [max(len(r[i]) for r in [headers, *self.rows]) for i in range(5)]
        line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
        print("\n" + line + "\n" + "-" * len(line))
        for row in self.rows:
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))


def bench_predict(table: Table, rows: int) -> None:
    import onnxruntime as ort

    import portanet
    from portanet.runtime.providers import usable_cpus

    model = portanet.load(MODEL_ONNX, providers="cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()  # same threads as portanet: a fair baseline
    raw = ort.InferenceSession(str(MODEL_ONNX), options, providers=["CPUExecutionProvider"])
    one = pima_rows(1)
    table.add("predict, batch 1 (vs raw session.run)",
              *paired(lambda: model.predict(one), lambda: raw.run(None, {"features": one}),
                      15, 5000), "us", "≤ 1.10×")
    many = pima_rows(rows)
    table.add(f"predict, {rows:,} rows (vs raw session.run)",
              *paired(lambda: model.predict(many), lambda: raw.run(None, {"features": many}), 9),
              "ms", "≤ 1.0×")


def bench_infer(table: Table, rows: int, work: Path, big_rows: int) -> None:
    import pyarrow.csv as pacsv

    from portanet.tables.infer import infer_file

    source = work / "rows.csv"
    write_csv(source, rows)
    import portanet

    model = portanet.load(MODEL_ONNX, providers="cpu")
    read = lambda: pacsv.read_csv(source)  # noqa: E731
    table.add(f"infer_file {rows:,}-row CSV → CSV (vs pyarrow read_csv alone)",
              *paired(lambda: infer_file(model, source, work / "out.csv"), read, 5), "s",
              "≤ 1.5×")
    table.add(f"infer_file {rows:,}-row CSV → NPY (vs pyarrow read_csv alone)",
              *paired(lambda: infer_file(model, source, work / "out.npy"), read, 5), "s",
              "≤ 1.5×")
    cli = [sys.executable, "-m", "portanet", "infer", str(MODEL_ONNX)]
    _, small = peak_rss_mib([*cli, str(source), "--output", str(work / "o1.csv")])
    big = work / "big.csv"
    write_csv(big, big_rows)
    _, large = peak_rss_mib([*cli, str(big), "--output", str(work / "o4.csv")])
    table.add(f"peak RSS of portanet infer, {big_rows:,} vs {rows:,} rows", large, small,
              "MiB", "flat (≈ 1.0×)")


def bench_cold_start(table: Table, work: Path, skip_keras: bool) -> None:
    one = work / "one.csv"
    write_csv(one, 1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ours = [sys.executable, "-m", "portanet", "infer", str(MODEL_ONNX), str(one)]
    run = lambda argv: subprocess.run(argv, check=True, capture_output=True, env=env)  # noqa: E731
    portanet_s = median_of(lambda: run(ours), 5)
    if skip_keras:
        print(f"  cold start portanet infer: {portanet_s:.2f} s (Keras baseline skipped)")
        return
    script = ("import keras, pyarrow.csv as c, numpy as np\n"
              f"m = keras.saving.load_model({str(MODEL_H5)!r}, compile=False)\n"
              f"x = np.column_stack([a.to_numpy() for a in c.read_csv({str(one)!r}).columns])\n"
              "print(m.predict(x.astype('float32'), verbose=0))\n")
    keras_s = median_of(lambda: run([sys.executable, "-c", script]), 3)
    table.add("cold start: portanet infer 1-row CSV (vs Keras load .h5 + predict)", portanet_s,
              keras_s, "s", "≥ 8× faster", higher_is_better=True)


def bench_keras(table: Table, rows: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import portanet
    from portanet.export.keras.load import load_keras

    keras_model = load_keras(MODEL_H5).model
    model = portanet.load(MODEL_ONNX, providers="cpu")
    one, many = pima_rows(1), pima_rows(rows)
    table.add("Keras predict vs portanet, batch 1 (Keras model(x))",
              best_of(lambda: model.predict(one), 5, 2000),
              best_of(lambda: keras_model(one, training=False), 5, 200), "us", "faster",
              higher_is_better=True)
    table.add(f"Keras predict vs portanet, {rows:,} rows (Keras predict(batch_size=65536))",
              *paired(lambda: model.predict(many),
                      lambda: keras_model.predict(many, batch_size=65536, verbose=0), 3),
              "ms", "faster", higher_is_better=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--skip-keras", action="store_true")
    args = parser.parse_args()
    table = Table()
    print(f"portanet benchmarks on {os.cpu_count()} CPUs (affinity "
          f"{len(os.sched_getaffinity(0))}), {args.rows:,} rows", flush=True)
    with tempfile.TemporaryDirectory(prefix="portanet-bench-") as folder:
        work = Path(folder)
        bench_predict(table, args.rows)
        bench_infer(table, args.rows, work, args.big_rows)
        bench_cold_start(table, work, args.skip_keras)
        if not args.skip_keras:
            bench_keras(table, args.rows)
    table.show()


if __name__ == "__main__":
    main()
