"""``Model.predict`` against one raw onnxruntime ``InferenceSession.run``, in one process.

Issue 20's targets: a large batch (1M Pima rows) ≤ 1.0× one raw ``run`` of the whole array,
batch 1 ≤ 0.9×. The raw side is a stock session (onnxruntime's default options: intra-op
threads for the CPUs this process may use, spinning on), the portanet side ``portanet.load``
of the same file; a third, informational side is the raw session with spinning off, as
portanet's sessions run (on a loaded machine spinning threads lose much of their time, so this
peer shows what is left without that effect). The sides are timed in turn (the order rotates
every repetition), each figure is the median of the repetitions (wall and CPU time), and every
run first checks that predict's output is bit-identical to the raw run's.

    .venv/bin/python benchmarks/predict_overhead.py                  # Pima only (~1 min)
    .venv/bin/python benchmarks/predict_overhead.py --runs 3 \\
        --image-model /tmp/mobilenet.onnx                            # + an image model

An image model comes from ``portanet export`` (e.g. the Teachable Machine MobileNet:
``python -m portanet export ../shared/data/legacy-h5/keras240_teachable_mobilenet.h5
--output /tmp/mobilenet.onnx``); its large batch is ``--image-rows`` images (default 256,
chunks of 64 images), filled with uniform noise in the model's input range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from run import MODEL_ONNX, pima_rows  # noqa: E402  (benchmarks/run.py, the house helpers)

#: Pause before each side is timed: onnxruntime's spinning threads of the side before have gone
#: to sleep by then. Without it, whatever was timed right after the stock session shared the
#: cores with its still-spinning threads (measured on a quiet machine: predict at 1M rows read
#: 1.15–1.24× of the raw run without the pause, 0.84–0.99× with it, on the same code).
SETTLE_S = 0.05


def raw_session(path: Path, spinning: bool = True):
    """A stock onnxruntime session on the CPU: its default options (spinning on, one intra-op
    thread per usable CPU, as portanet uses); ``spinning=False`` for the informational peer
    with idle threads sleeping, as portanet's sessions do."""
    import onnxruntime as ort

    from portanet.runtime.providers import usable_cpus

    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def alternated(
    sides: dict[str, Callable[[], object]], repeats: int, inner: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds per call of each side, per repetition; the sides are timed in
    turn and the order rotates every repetition (so that no side always follows another), with
    a pause of :data:`SETTLE_S` before each: a stock session's threads keep spinning after its
    last run and would otherwise slow whatever is timed next."""
    for func in sides.values():
        func()
    names = list(sides)
    times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            func = sides[name]
            time.sleep(SETTLE_S)
            cpu, start = time.process_time(), time.perf_counter()
            for _ in range(inner):
                func()
            times[name][0].append((time.perf_counter() - start) / inner)
            times[name][1].append((time.process_time() - cpu) / inner)
    return times


def compare(
    label: str, path: Path, x: np.ndarray, target: float, repeats: int, inner: int
) -> float:
    """Check bit-identity, time the sides on ``x``, print the figures; return predict's ratio
    to the stock raw run (medians)."""
    import portanet

    session, quiet = raw_session(path), raw_session(path, spinning=False)
    model = portanet.load(path)
    name = session.get_inputs()[0].name
    expected = session.run(None, {name: x})[0]
    got = model.predict(x)
    if not (isinstance(got, np.ndarray) and np.array_equal(got, expected)):
        raise SystemExit(f"{label}: predict differs from raw run (expected bit-identical)")
    times = alternated(
        {
            "raw": lambda: session.run(None, {name: x}),
            "raw, spinning off": lambda: quiet.run(None, {name: x}),
            "predict": lambda: model.predict(x),
        },
        repeats,
        inner,
    )
    wall = {n: statistics.median(t[0]) for n, t in times.items()}
    cpu = {n: statistics.median(t[1]) for n, t in times.items()}
    per_rep = [o / r for o, r in zip(times["predict"][0], times["raw"][0], strict=True)]
    ratio = wall["predict"] / wall["raw"]
    unit, scale = ("ms", 1e3) if wall["raw"] > 1e-3 else ("µs", 1e6)
    print(
        f"  {label}: predict {wall['predict'] * scale:.2f} {unit} vs raw run "
        f"{wall['raw'] * scale:.2f} {unit} = {ratio:.2f}× (target ≤ {target:.2f}×: "
        f"{'met' if ratio <= target else 'MISSED'}; per repetition "
        f"{min(per_rep):.2f}–{max(per_rep):.2f}×; bit-identical)\n"
        f"      vs raw with spinning off {wall['raw, spinning off'] * scale:.2f} {unit}: "
        f"{wall['predict'] / wall['raw, spinning off']:.2f}×; CPU per call "
        + ", ".join(f"{n} {c * scale:.2f}" for n, c in cpu.items())
        + f" {unit}; {model._executor.chunk_workers} chunk threads"
    )
    return ratio


def image_batch(path: Path, rows: int) -> np.ndarray:
    """``rows`` images of the model's input shape, uniform noise in 0..1 (the recipe's range
    does not matter to timing)."""
    import onnxruntime as ort

    shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0]
    dims = [d if isinstance(d, int) else 224 for d in shape.shape[1:]]
    return np.random.default_rng(0).random((rows, *dims), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="whole runs; ratios as ranges")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Pima rows of the large batch")
    parser.add_argument("--repeats", type=int, default=21, help="alternating repetitions")
    parser.add_argument("--image-model", type=Path, help="an exported image model (.onnx)")
    parser.add_argument("--image-rows", type=int, default=256, help="images in the large batch")
    args = parser.parse_args()
    many, one = pima_rows(args.rows), pima_rows(1, seed=1)
    results: dict[str, list[float]] = {}
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}")
        measures = [
            (f"Pima, {args.rows:,} rows", MODEL_ONNX, many, 1.0, args.repeats, 1),
            ("Pima, batch 1", MODEL_ONNX, one, 0.9, args.repeats, 2000),
        ]
        if args.image_model:
            images = image_batch(args.image_model, args.image_rows)
            measures += [
                (f"image model, {args.image_rows} images", args.image_model, images, 1.0, 5, 1),
                ("image model, batch 1", args.image_model, images[:1], 1.0, args.repeats, 20),
            ]
        for label, path, x, target, repeats, inner in measures:
            results.setdefault(label, []).append(compare(label, path, x, target, repeats, inner))
    if args.runs > 1:
        print("ratios over the runs (median of each run):")
        for label, ratios in results.items():
            print(f"  {label}: {min(ratios):.2f}–{max(ratios):.2f}×")


if __name__ == "__main__":
    main()
