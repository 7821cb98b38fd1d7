"""``portanet optimize`` on real image models, side by side in one run: the real Teachable
Machine MobileNet (``../shared/data``) on crops of real photographs, and the digits CNN on
scikit-learn's digits. Every speed-up is a ratio against the float32 export timed in the same
run; label agreement is checked again here, independently of the optimizer's own numbers, on
images the optimizer never saw (against Keras and against the float32 ONNX); the optimizer's
peak memory is measured with ``--source`` (TensorFlow loaded) and without.

    .venv/bin/python benchmarks/optimize_mobilenet.py             # ~15 minutes on 2 cores
    .venv/bin/python benchmarks/optimize_mobilenet.py --seconds 2 --skip-memory

The optimizer runs as ``python benchmarks/_peak.py optimize ...`` (the real command line in a
child process, which reports its own peak resident memory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "data" / "legacy-h5" / "keras240_teachable_mobilenet.h5"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PEAK = re.compile(r"peak_rss_mb=(\d+)")


def optimize(model: Path, rows: Path, out: Path, extra: list[str]) -> tuple[dict, int, str]:
    """Run the optimizer's command line; its JSON report, peak RSS (MB) and printed tables."""
    report = out.with_suffix(".json")
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "_peak.py"),
        "optimize",
        str(model),
        "--data",
        str(rows),
        "--output",
        str(out),
        "--report",
        str(report),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    peak = PEAK.findall(done.stderr)
    if done.returncode not in (0, 1):
        raise SystemExit(f"optimize failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(report.read_text()), int(peak[-1]) if peak else -1, done.stdout


def independent(
    keras_path: Path,
    base: Path,
    chosen: Path,
    x: np.ndarray,
    seconds: float,
    batch: int,
    threads: int | None = None,
) -> dict:
    """Labels of the chosen file against Keras and the float32 ONNX on unseen rows ``x``
    (Keras layout), and its batch-1 speed-up over float32 timed here with plain
    ``portanet.load`` sessions in alternating paired slices."""
    import portanet
    from portanet.export.keras.load import load_keras
    from portanet.optimize.timing import compare

    keras_model = load_keras(keras_path).model
    want_keras = np.concatenate(
        [np.asarray(keras_model(x[i : i + 16], training=False)) for i in range(0, len(x), 16)]
    )
    float32 = portanet.load(base, threads=threads)
    optimized = portanet.load(chosen, threads=threads)
    want = np.concatenate([float32.predict(x[i : i + 16]) for i in range(0, len(x), 16)])
    got = np.concatenate([optimized.predict(x[i : i + 16]) for i in range(0, len(x), 16)])
    one = x[:1]
    timing = compare(
        {"float32": lambda: float32.predict(one), "chosen": lambda: optimized.predict(one)},
        base="float32",
        seconds=seconds,
        min_rounds=10,
        max_rounds=20,
    )
    low, mid, high = timing.speedup("chosen")
    many = x[np.arange(batch) % len(x)]
    timing = compare(
        {"float32": lambda: float32.predict(many), "chosen": lambda: optimized.predict(many)},
        base="float32",
        seconds=seconds,
        min_rounds=10,
        max_rounds=20,
    )
    return {
        "batch": batch,
        "speedup_batch": timing.speedup("chosen"),
        "rows": len(x),
        "agree_keras": float(np.mean(want_keras.argmax(1) == got.argmax(1))),
        "agree_float32": float(np.mean(want.argmax(1) == got.argmax(1))),
        "float32_agree_keras": float(np.mean(want_keras.argmax(1) == want.argmax(1))),
        "max_abs_keras": float(np.abs(want_keras - got).max()),
        "speedup_b1": (low, mid, high),
    }


def teachable_machine(folder: Path, args: argparse.Namespace) -> dict:
    from portanet.export import export_model
    from tests.optimize.photos import evaluation_and_calibration, photo_crops

    onnx_path = folder / "teachable_mobilenet.onnx"
    export_model(FIXTURE, onnx_path)
    held, calib = evaluation_and_calibration(evaluation=240, calibration=128)
    rows = folder / "photo_rows.npy"
    np.save(rows, np.concatenate([calib, held]))  # the optimizer's rows (it splits them)
    unseen, boxes = photo_crops(args.unseen, seed=303)
    _, held_boxes = photo_crops(240, seed=101)
    _, calib_boxes = photo_crops(128, seed=202)
    assert not set(boxes) & (set(held_boxes) | set(calib_boxes)), "unseen crops overlap"
    common = [
        "--max-abs",
        "inf",
        "--min-agreement",
        str(args.tm_agreement),
        "--try",
        args.transforms,
        "--seconds",
        str(args.seconds),
        "--calibration-rows",
        "128",
        "--throughput-batch",
        "32",
        *threads_args(args),
    ]
    out = folder / "tm.optimized.onnx"
    found, peak_source, printed = optimize(
        onnx_path, rows, out, [*common, "--source", str(FIXTURE)]
    )
    print(printed)
    peak_plain = -1
    if not args.skip_memory:
        _, peak_plain, _ = optimize(onnx_path, rows, folder / "tm.plain.onnx", common)
    chosen = out if out.exists() else onnx_path
    check = independent(FIXTURE, onnx_path, chosen, unseen, args.seconds * 2, 8, args.threads)
    return {
        "name": "Teachable Machine MobileNet",
        "found": found,
        "check": check,
        "peak_source": peak_source,
        "peak_plain": peak_plain,
    }


def threads_args(args: argparse.Namespace) -> list[str]:
    """``--threads N`` for the optimizer when the benchmark was given one."""
    return ["--threads", str(args.threads)] if args.threads else []


def digits(folder: Path, args: argparse.Namespace) -> dict:
    from tests.optimize.conftest import train_digits

    (folder / "digits").mkdir(exist_ok=True)
    made = train_digits(folder / "digits")
    rows = folder / "digit_rows.npy"
    np.save(rows, made.rows[:400])
    out = folder / "digits.optimized.onnx"
    found, peak, printed = optimize(
        made.onnx_path,
        rows,
        out,
        [
            "--source",
            str(made.keras_path),
            "--max-abs",
            "inf",
            "--min-agreement",
            "0.995",
            "--try",
            args.transforms,
            "--goal",
            "throughput",
            "--throughput-batch",
            "256",
            "--seconds",
            str(args.seconds),
            *threads_args(args),
        ],
    )
    print(printed)
    chosen = out if out.exists() else made.onnx_path
    check = independent(
        made.keras_path, made.onnx_path, chosen, made.rows[400:], args.seconds, 256, args.threads
    )
    return {
        "name": "digits CNN",
        "found": found,
        "check": check,
        "peak_source": peak,
        "peak_plain": -1,
    }


def summary(result: dict) -> str:
    found, check = result["found"], result["check"]
    chosen = next((c for c in found["candidates"] if c["name"] == found["chosen"]), None)
    lines = [f"{result['name']}: chosen {found['chosen']}"]
    if chosen:
        int8 = chosen.get("int8") or {}
        spread = chosen.get("speedup_spread") or [1, 1]
        tspread = chosen.get("throughput_spread") or [1, 1]
        lines += [
            f"  optimizer: {100 * (chosen['agreement'] or 0):.2f} % labels kept on "
            f"{found['rows']['evaluation']} final rows (search chose on "
            f"{found['rows'].get('selection', 0)} others); batch 1 ×{chosen['speedup']:.2f} "
            f"(spread {spread[0]:.2f}–{spread[1]:.2f}); batch {found['throughput_batch']} "
            f"×{chosen['throughput_speedup']:.2f} (spread {tspread[0]:.2f}–{tspread[1]:.2f}); "
            f"{chosen['portability']} ONNX",
            f"  int8 recipe: {int8.get('recipe')}, {len(int8.get('float_nodes', []))} nodes "
            f"in float for accuracy, {len(int8.get('speed_float_nodes') or [])} for speed, "
            f"VNNI {int8.get('cpu_vnni')}"
            if int8
            else "  (no int8)",
        ]
        lines += [
            f"  speed step: {s['note']}"
            for s in int8.get("steps", [])
            if "for speed" in s["recipe"]
        ]
    low, mid, high = check["speedup_b1"]
    lines += [
        f"  independent check on {check['rows']} unseen rows: labels as Keras "
        f"{100 * check['agree_keras']:.2f} % (float32 export: "
        f"{100 * check['float32_agree_keras']:.2f} %), as float32 "
        f"{100 * check['agree_float32']:.2f} %, max abs vs Keras {check['max_abs_keras']:.3g}",
        f"  independent batch-1 speed-up ×{mid:.2f} (20th–80th percentile {low:.2f}–{high:.2f})",
        "  independent batch-{} speed-up ×{:.2f} (20th–80th percentile {:.2f}–{:.2f})".format(
            check["batch"], check["speedup_batch"][1], *check["speedup_batch"][::2]
        ),
        f"  peak memory of optimize: {result['peak_source']} MB with --source"
        + (f", {result['peak_plain']} MB without" if result["peak_plain"] > 0 else ""),
    ]
    lines += [f"  note: {n}" for n in found.get("notes", [])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per candidate")
    parser.add_argument(
        "--tm-agreement",
        type=float,
        default=0.995,
        help="--min-agreement asked of the optimizer for the MobileNet (the target, 99 %% on "
        "unseen crops, is checked independently)",
    )
    parser.add_argument("--unseen", type=int, default=240, help="unseen photo crops to check")
    parser.add_argument("--try", dest="transforms", default="ort,fp16,int8-dynamic,int8-static")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per session for the optimizer and the check (default: every usable CPU)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="no run without --source")
    parser.add_argument("--out", type=Path, default=None, help="folder for the files")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="portanet-optimize-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = []
    if FIXTURE.exists():
        results.append(teachable_machine(folder, args))
        print(summary(results[-1]), flush=True)
    else:
        print(f"skipping the Teachable Machine model: {FIXTURE} is absent")
    results.append(digits(folder, args))
    print(f"\n=== side by side ({time.time() - started:.0f} s, files in {folder}) ===")
    for result in results:
        print(summary(result))
    (folder / "summary.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
