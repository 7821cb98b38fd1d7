"""Which int8 recipes can keep the Teachable Machine MobileNet within 1 % of float32, and how
fast each is: the evidence behind docs/optimize.md's "why the MobileNet target is not met".

Every recipe is built with onnxruntime's own quantizer from one calibration (128 photo crops,
cached ranges) and scored on two disjoint sets of photo crops that calibration never saw — the
240 crops the optimizer's search would choose on and 240 unseen ones — against the float32
export; then all are timed at batch 1 in alternating paired slices against float32.

    .venv/bin/python benchmarks/int8_recipes.py --threads 1      # ~5 minutes on 2 cores

Also shown: the depthwise-in-float recipe with onnxruntime's graph optimizations off and on
(a QDQ graph whose depthwise convolutions stay float loses half its labels once they are on).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "data" / "legacy-h5" / "keras240_teachable_mobilenet.h5"


def session(path: Path, threads: int, level: str = "ORT_ENABLE_ALL"):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def labels(sess, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: x[i : i + 16]})[0].argmax(1) for i in range(0, len(x), 16)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per recipe")
    args = parser.parse_args()
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as quantize
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from portanet.export import export_model
    from portanet.optimize.int8 import _Reader
    from portanet.optimize.quiet import quiet
    from portanet.optimize.timing import compare
    from tests.optimize.photos import photo_crops

    folder = Path(tempfile.mkdtemp(prefix="portanet-int8-recipes-"))
    base = folder / "float32.onnx"
    export_model(FIXTURE, base)
    pre = folder / "pre.onnx"
    with quiet():
        quant_pre_process(str(base), str(pre))
    calibration, calib_boxes = photo_crops(128, seed=202)
    selection, sel_boxes = photo_crops(240, seed=101)
    unseen, unseen_boxes = photo_crops(240, seed=303)
    assert not (
        set(calib_boxes) & set(sel_boxes) or set(unseen_boxes) & (set(sel_boxes) | set(calib_boxes))
    )
    graph = onnx.load(str(pre)).graph
    name = graph.input[0].name
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    groups = {
        "all int8": [],
        "first convolution float": [nodes[0].name],
        "classifier head float": [
            n.name for n in graph.node if n.op_type in ("MatMul", "GlobalAveragePool", "Relu")
        ]
        + [n.name for n in nodes if n.name.endswith("Conv_1/Conv2D")],
        "17 projection convolutions float": [
            n.name for n in nodes if n.name.endswith("_project/Conv2D")
        ],
        "projections and the 10 Adds float": [
            n.name for n in graph.node if n.name.endswith("_project/Conv2D") or n.op_type == "Add"
        ],
        "16 expansion convolutions float": [
            n.name for n in nodes if n.name.endswith("_expand/Conv2D")
        ],
        "17 depthwise convolutions float": [n.name for n in nodes if "depthwise" in n.name],
    }
    float_labels = {
        k: labels(session(base, args.threads), x)
        for k, x in (("sel", selection), ("unseen", unseen))
    }
    built: dict[str, Path] = {}
    rows = []
    for method in ("MinMax", "Percentile", "Entropy"):
        for group, exclude in groups.items():
            if method != "Percentile" and group != "all int8":
                continue
            target = folder / f"{method}.{len(built)}.onnx"
            with quiet():
                quantize(
                    str(pre),
                    str(target),
                    _Reader({name: calibration}, 8),  # type: ignore[arg-type]
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method),
                    nodes_to_exclude=exclude,
                    calibration_cache_path=str(folder / f"ranges.{method}.json"),
                    extra_options={"WeightSymmetric": True, "CalibStridedMinMax": 16},
                )
            label = f"{method}, {group}"
            built[label] = target
            agree = {
                k: float(np.mean(labels(session(target, args.threads), x) == float_labels[k]))
                for k, x in (("sel", selection), ("unseen", unseen))
            }
            rows.append((label, len(exclude), agree))
            print(
                f"{label}: {len(exclude)} float nodes, {100 * agree['sel']:.2f} % / "
                f"{100 * agree['unseen']:.2f} %",
                flush=True,
            )
    depthwise = built["Percentile, 17 depthwise convolutions float"]
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC"):
        agree = np.mean(
            labels(session(depthwise, args.threads, level), unseen) == float_labels["unseen"]
        )
        print(f"depthwise float, graph optimizations {level}: {100 * agree:.2f} % unseen")
    sessions = {"float32": session(base, args.threads)} | {
        k: session(p, args.threads) for k, p in built.items()
    }
    one = {name: unseen[:1]}
    calls: dict[str, Callable[[], Any]] = {
        k: functools.partial(s.run, None, one) for k, s in sessions.items()
    }
    found = compare(
        calls,
        base="float32",
        seconds=args.seconds,
        min_rounds=8,
        max_rounds=8,
    )
    print(
        f"\n| recipe ({args.threads} thread(s)) | float nodes | agreement: search crops "
        "| unseen crops | batch-1 × (20th–80th) |"
    )
    print("|---|---|---|---|---|")
    for label, count, agree in rows:
        low, mid, high = found.speedup(label)
        print(
            f"| {label} | {count} | {100 * agree['sel']:.2f} % | {100 * agree['unseen']:.2f} % "
            f"| ×{mid:.2f} ({low:.2f}–{high:.2f}) |"
        )


if __name__ == "__main__":
    main()
