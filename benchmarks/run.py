"""portanet's runtime benchmarks: every figure is a ratio against its baseline or peer, measured
in the same run on the same machine, the sides timed alternately; each row says its target and
whether it was met.

    .venv/bin/python benchmarks/run.py              # everything (1M / 4M rows; a few minutes)
    .venv/bin/python benchmarks/run.py --runs 3     # three runs, ratios shown as ranges
    .venv/bin/python benchmarks/run.py --rows 200000 --skip-keras
    .venv/bin/python benchmarks/run.py --provider cuda   # on a GPU machine (onnxruntime-gpu)

Peers: raw ``InferenceSession.run``, onnxruntime with IOBinding and reused buffers, LiteRT
(XNNPACK; the Keras model converted with the TFLite converter here), Keras itself, and
``pyarrow.csv.read_csv`` alone for file inference. The Keras and LiteRT rows need
``pip install -e ".[export,bench]"`` (or --skip-keras).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_ONNX = REPO / "models" / "pima_mlp.onnx"
MODEL_H5 = REPO / "models" / "pima_mlp.h5"
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def alternate(
    funcs: dict[str, Callable[[], object]], repeats: int, inner: int = 1
) -> dict[str, float]:
    """Best mean seconds per call of each function, all timed in turn ``repeats`` times (after
    a warm-up), so that drifts of the machine (frequency, neighbours) hit every side alike."""
    for func in funcs.values():
        func()
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            for _ in range(inner):
                func()
            best[name] = min(best[name], (time.perf_counter() - start) / inner)
    return best


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


_RSS_PROBE = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(status, usage.ru_maxrss)\n"
)


def peak_rss_mib(argv: list[str]) -> float:
    """Run a command; return its own peak RSS in MiB.

    Linux carries a parent's RSS high-water mark into a forked child's ``ru_maxrss``, so the
    command is started from a small intermediate Python process, not from this (large) one.
    """
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, *argv], capture_output=True, text=True, check=True
    )
    status, kib = map(int, done.stdout.split())
    if status != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-500:]}")
    return kib / 1024


@dataclass
class Row:
    what: str
    ours: float
    base: float
    unit: str
    target: float | None  # ratio bound; None: informational
    faster: bool = False  # ratio = base / ours ("N× faster"), to be ≥ target

    @property
    def ratio(self) -> float:
        return self.base / self.ours if self.faster else self.ours / self.base

    def met(self) -> str:
        if self.target is None:
            return ""
        ok = self.ratio >= self.target if self.faster else self.ratio <= self.target
        return "met" if ok else "MISSED"

    def target_text(self) -> str:
        if self.target is None:
            return "(peer)"
        return f"≥ {self.target:g}× faster" if self.faster else f"≤ {self.target:.2f}×"


_UNITS = {"s": (1, "s"), "ms": (1e3, "ms"), "us": (1e6, "µs"), "MiB": (1, "MiB")}


class Table:
    """The rows of one run."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        scale, suffix = _UNITS[row.unit]
        print(
            f"  {row.what}: {row.ours * scale:.2f} {suffix} vs {row.base * scale:.2f} "
            f"{suffix} → {row.ratio:.2f}× ({row.target_text()} {row.met()})",
            flush=True,
        )


def show(runs: list[Table]) -> None:
    """One line per measure: figures of the last run, the ratio's range over the runs."""
    headers = (
        "measure",
        "portanet",
        "baseline",
        "ratio" if len(runs) == 1 else f"ratio ({len(runs)} runs)",
        "target",
        "met",
    )
    lines = []
    for index, row in enumerate(runs[-1].rows):
        ratios = [run.rows[index].ratio for run in runs]
        scale, suffix = _UNITS[row.unit]
        low, high = min(ratios), max(ratios)
        ratio = f"{low:.2f}×" if len(runs) == 1 else f"{low:.2f}–{high:.2f}×"
        verdicts = {run.rows[index].met() for run in runs}
        met = verdicts.pop() if len(verdicts) == 1 else "mixed"
        lines.append(
            (
                row.what,
                f"{row.ours * scale:.2f} {suffix}",
                f"{row.base * scale:.2f} {suffix}",
                ratio,
                row.target_text(),
                met,
            )
        )
    widths = [max(len(r[i]) for r in [headers, *lines]) for i in range(6)]
    text = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print("\n" + text + "\n" + "-" * len(text))
    for line in lines:
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


# -- the measures ------------------------------------------------------------------------------


def raw_session(provider: str):
    import onnxruntime as ort

    from portanet.runtime.providers import ALIASES, usable_cpus

    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()  # same threads as portanet: a fair baseline
    options.inter_op_num_threads = 1
    names = [ALIASES[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
    return ort.InferenceSession(str(MODEL_ONNX), options, providers=names)


def iobinding_peer(session, x: np.ndarray) -> Callable[[], object]:
    """onnxruntime at its fastest for one shape: input and output bound once to reused
    buffers; a call copies the rows in and runs (the output stays in the reused buffer)."""
    import onnxruntime as ort

    inbuf = np.empty_like(x)
    out = np.empty((len(x), 1), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_ortvalue_input("features", ort.OrtValue.ortvalue_from_numpy(inbuf))
    binding.bind_ortvalue_output("probability", ort.OrtValue.ortvalue_from_numpy(out))

    def call() -> np.ndarray:
        np.copyto(inbuf, x)
        session.run_with_iobinding(binding)
        return out

    return call


def litert_peer() -> Callable[[np.ndarray], np.ndarray] | None:
    """LiteRT (XNNPACK, the CPUs portanet uses) on the Keras model converted with the TFLite
    converter; a call resizes only when the batch changes. None when LiteRT is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("  LiteRT rows skipped: pip install -e '.[bench]'")
        return None
    import tensorflow as tf

    from portanet.export.keras.load import load_keras
    from portanet.runtime.providers import usable_cpus

    model = load_keras(MODEL_H5).model
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    # One interpreter per batch size: a single row runs on one thread (XNNPACK's idle pool
    # threads would otherwise spin on the cores the other sides are timed on).
    interpreters: dict[int, tuple[Any, int, int]] = {}

    def predict(x: np.ndarray) -> np.ndarray:
        if len(x) not in interpreters:
            interpreter = Interpreter(
                model_content=blob, num_threads=1 if len(x) == 1 else usable_cpus()
            )
            inp = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(inp, list(x.shape))
            interpreter.allocate_tensors()
            interpreters[len(x)] = (interpreter, inp, interpreter.get_output_details()[0]["index"])
        interpreter, inp, out = interpreters[len(x)]
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return predict


def bench_predict(table: Table, rows: int, provider: str, with_litert: bool) -> None:
    import portanet

    model = portanet.load(MODEL_ONNX, providers=provider)
    raw = raw_session(provider)
    litert = litert_peer() if with_litert else None
    one = pima_rows(1)
    expected = raw.run(None, {"features": one})[0]
    assert np.allclose(model.predict(one), expected, atol=1e-6)
    sides = {
        "portanet": lambda: model.predict(one),
        "raw": lambda: raw.run(None, {"features": one}),
        "iobinding": iobinding_peer(raw, one),
    }
    if litert is not None:
        assert np.allclose(litert(one), expected, atol=1e-5)
        sides["litert"] = lambda: litert(one)
    best = alternate(sides, 30, 2000)
    # Issue 20's targets: batch 1 <= 0.9x one raw run, 1M rows <= 1.0x, in one process.
    table.add(Row("predict, batch 1 vs raw session.run", best["portanet"], best["raw"], "us", 0.90))
    table.add(
        Row(
            "predict, batch 1 vs onnxruntime IOBinding, reused buffers",
            best["portanet"],
            best["iobinding"],
            "us",
            1.0,
        )
    )
    if litert is not None:
        table.add(
            Row("predict, batch 1 vs LiteRT (XNNPACK)", best["portanet"], best["litert"], "us", 1.0)
        )
    many = pima_rows(rows)
    expected = raw.run(None, {"features": many})[0]
    assert np.allclose(model.predict(many), expected, atol=1e-6)
    sides = {
        "portanet": lambda: model.predict(many),
        "raw": lambda: raw.run(None, {"features": many}),
    }
    if litert is not None:
        assert np.allclose(litert(many), expected, atol=1e-5)
        sides["litert"] = lambda: litert(many)
    best = alternate(sides, 9)
    table.add(
        Row(
            f"predict, {rows:,} rows vs one raw session.run",
            best["portanet"],
            best["raw"],
            "ms",
            1.0,
        )
    )
    if litert is not None:
        table.add(
            Row(
                f"predict, {rows:,} rows vs LiteRT (XNNPACK)",
                best["portanet"],
                best["litert"],
                "ms",
                1.0,
            )
        )


def bench_infer(table: Table, rows: int, work: Path, big_rows: int, provider: str) -> None:
    import pyarrow.csv as pacsv

    import portanet
    from portanet.tables.infer import infer_file

    source = work / "rows.csv"
    if not source.exists():
        write_csv(source, rows)
    model = portanet.load(MODEL_ONNX, providers=provider)
    sides = {
        "read": lambda: pacsv.read_csv(source),
        "csv": lambda: infer_file(model, source, work / "out.csv"),
        "npy": lambda: infer_file(model, source, work / "out.npy"),
        "parquet": lambda: infer_file(model, source, work / "out.parquet"),
    }
    best = alternate(sides, 5)
    for fmt, target in (("csv", 1.5), ("npy", 1.2), ("parquet", 1.2)):
        table.add(
            Row(
                f"infer_file {rows:,}-row CSV → {fmt.upper()} vs pyarrow read_csv alone",
                best[fmt],
                best["read"],
                "s",
                target,
            )
        )
    cli = [sys.executable, "-m", "portanet", "infer", str(MODEL_ONNX), "--provider", provider]
    small = peak_rss_mib([*cli, str(source), "--output", str(work / "o1.csv")])
    big = work / "big.csv"
    if not big.exists():
        write_csv(big, big_rows)
    large = peak_rss_mib([*cli, str(big), "--output", str(work / "o4.csv")])
    table.add(
        Row(f"peak RSS of portanet infer, {big_rows:,} vs {rows:,} rows", large, small, "MiB", 1.10)
    )


def bench_cold_start(table: Table, work: Path, skip_keras: bool) -> None:
    one = work / "one.csv"
    write_csv(one, 1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ours = [sys.executable, "-m", "portanet", "infer", str(MODEL_ONNX), str(one)]
    run = lambda argv: subprocess.run(argv, check=True, capture_output=True, env=env)  # noqa: E731
    if skip_keras:
        print(
            f"  cold start portanet infer: {median_of(lambda: run(ours), 7):.2f} s "
            f"(Keras baseline skipped)"
        )
        return
    script = (
        "import keras, pyarrow.csv as c, numpy as np\n"
        f"m = keras.saving.load_model({str(MODEL_H5)!r}, compile=False)\n"
        f"x = np.column_stack([a.to_numpy() for a in c.read_csv({str(one)!r}).columns])\n"
        "print(m.predict(x.astype('float32'), verbose=0))\n"
    )
    keras_argv = [sys.executable, "-c", script]
    ours_times, keras_times = [], []
    for _ in range(3):  # alternated, like every other pair
        ours_times.append(median_of(lambda: run(ours), 3))
        keras_times.append(median_of(lambda: run(keras_argv), 1))
    table.add(
        Row(
            "cold start: portanet infer 1-row CSV vs Keras load .h5 + predict",
            statistics.median(ours_times),
            statistics.median(keras_times),
            "s",
            14.0,
            faster=True,
        )
    )


def bench_keras(table: Table, rows: int) -> None:
    import portanet
    from portanet.export.keras.load import load_keras

    keras_model = load_keras(MODEL_H5).model
    model = portanet.load(MODEL_ONNX, providers="cpu")
    one, many = pima_rows(1), pima_rows(rows)
    best = alternate(
        {"ours": lambda: model.predict(one), "keras": lambda: keras_model(one, training=False)},
        5,
        200,
    )
    table.add(
        Row(
            "Keras model(x) vs portanet, batch 1",
            best["ours"],
            best["keras"],
            "us",
            None,
            faster=True,
        )
    )
    best = alternate(
        {
            "ours": lambda: model.predict(many),
            "keras": lambda: keras_model.predict(many, batch_size=65536, verbose=0),
        },
        3,
    )
    table.add(
        Row(
            f"Keras predict(batch_size=65536) vs portanet, {rows:,} rows",
            best["ours"],
            best["keras"],
            "ms",
            None,
            faster=True,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat everything; show ranges")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    parser.add_argument("--skip-keras", action="store_true", help="no Keras, LiteRT rows")
    parser.add_argument("--only", choices=["predict", "infer", "cold"], default=None)
    args = parser.parse_args()
    from portanet.runtime.providers import usable_cpus

    print(
        f"portanet benchmarks: {os.cpu_count()} CPUs ({usable_cpus()} usable, load "
        f"{os.getloadavg()[0]:.1f}), {args.rows:,} rows, provider {args.provider}",
        flush=True,
    )
    runs: list[Table] = []
    with tempfile.TemporaryDirectory(prefix="portanet-bench-") as folder:
        work = Path(folder)
        for index in range(args.runs):
            print(f"run {index + 1} of {args.runs}", flush=True)
            table = Table()
            if args.only in (None, "predict"):
                bench_predict(table, args.rows, args.provider, not args.skip_keras)
            if args.only in (None, "infer"):
                bench_infer(table, args.rows, work, args.big_rows, args.provider)
            if args.only in (None, "cold"):
                bench_cold_start(table, work, args.skip_keras)
            if args.only is None and not args.skip_keras:
                bench_keras(table, args.rows)
            runs.append(table)
    show(runs)


if __name__ == "__main__":
    main()
