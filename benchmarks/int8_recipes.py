"""Which int8 recipes can keep the Teachable Machine MobileNet within 1 % of float32 and Keras,
and how fast each is: the evidence behind docs/optimize.md's MobileNet recipe table.

Every recipe is built with onnxruntime's own quantizer (QDQ, uint8 activations, symmetric int8
weights per output channel unless said) from cached calibration ranges (the first 128, 256 or
368 crops of one seeded set) and scored on two disjoint sets of photo crops that calibration
never saw — the 240 crops an optimizer's search would choose on, and 240 unseen ones — against
the float32 export and, on the unseen crops, against Keras itself (run here, its labels cached).
Recipes with a distinct graph are then timed at batch 1 in alternating paired slices against
float32 (a bias correction changes no graph: it shares its base recipe's timing).

Bias corrections (:mod:`portanet.optimize.bias_correction`): ``analytic`` shifts each
quantized layer's bias by ``(W_q − W) · E[x]`` from the float model's mean inputs on the
calibration crops; ``sequential`` layer by layer by the measured mean output error with the
earlier layers already corrected. Both re-quantize from the same cached ranges.

    .venv/bin/python benchmarks/int8_recipes.py --threads 1 --out /tmp/int8-recipes  # ~12 min
    .venv/bin/python benchmarks/int8_recipes.py --only "analytic|sequential" --out /tmp/int8-recipes
    .venv/bin/python benchmarks/int8_recipes.py --time --out /tmp/int8-recipes   # then time

Results accumulate in ``OUT/results.json`` (one row per recipe, with its date); the table
printed at the end holds every row measured in ``OUT``. ``--groups`` adds the older
float-group recipes (projections, expansions, depthwise in float).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "data" / "legacy-h5" / "keras240_teachable_mobilenet.h5"


@dataclass
class Recipe:
    name: str
    method: str = "Percentile"
    calibration: int = 128
    exclude: str = "none"  # a key of groups()
    bias: str = "none"  # none | analytic | sequential
    reduce_range: bool = False
    per_channel: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    #: Calibration options that change the ranges (part of the cache's name).
    calib: dict[str, Any] = field(default_factory=dict)
    #: Keep the nodes writing the output (softmax and the dense layer before it) in float, as
    #: the optimizer's search does (:func:`portanet.optimize.int8.output_nodes`).
    outputs_float: bool = True

    def structure(self) -> str:
        """What decides the graph (and so the speed): not the bias correction."""
        return json.dumps(
            [
                self.exclude,
                self.outputs_float,
                self.reduce_range,
                self.per_channel,
                sorted(self.extra.items()),
            ],
            default=str,
        )


def recipes() -> list[Recipe]:
    P, E, M = "Percentile", "Entropy", "MinMax"
    first = "first convolution float"
    return [
        Recipe("Percentile, all int8 (output softmax and dense int8 too)", P, outputs_float=False),
        Recipe("Percentile, all int8", P),
        Recipe("Percentile, first convolution float", P, exclude=first),
        Recipe("MinMax, all int8", M),
        Recipe("Entropy, all int8", E),
        # 1. analytic (weight-only) bias correction
        Recipe("Percentile, all int8, analytic bias correction", P, bias="analytic"),
        Recipe("Percentile, first conv float, analytic BC", P, exclude=first, bias="analytic"),
        Recipe("Entropy, all int8, analytic BC", E, bias="analytic"),
        Recipe("MinMax, all int8, analytic BC", M, bias="analytic"),
        # 4a. least-squares ranges (as PyTorch's HistogramObserver): per activation tensor, the
        # clipping of its min-max range with the smallest 8-bit quantization error
        Recipe("MSE ranges, all int8", "MSE"),
        Recipe("MSE ranges, all int8, analytic BC", "MSE", bias="analytic"),
        Recipe("MSE ranges, first conv float, analytic BC", "MSE", exclude=first, bias="analytic"),
        # 2. sequential empirical bias correction
        Recipe("Percentile, all int8, sequential BC", P, bias="sequential"),
        Recipe("Percentile, first conv float, sequential BC", P, exclude=first, bias="sequential"),
        Recipe("Entropy, all int8, sequential BC", E, bias="sequential"),
        Recipe("Percentile 368, all int8, sequential BC", P, 368, bias="sequential"),
        # 3. more calibration crops
        Recipe("Percentile 256, all int8", P, 256),
        Recipe("Percentile 368, all int8", P, 368),
        Recipe("Entropy 256, all int8", E, 256),
        Recipe("Entropy 368, all int8", E, 368),
        Recipe("Percentile 368, first conv float", P, 368, exclude=first),
        Recipe("Entropy 368, first conv float", E, 368, exclude=first),
        Recipe("Percentile 368, all int8, analytic BC", P, 368, bias="analytic"),
        Recipe("Entropy 368, all int8, analytic BC", E, 368, bias="analytic"),
        Recipe("Percentile 368, first conv float, analytic BC", P, 368, first, "analytic"),
        Recipe("Entropy 368, first conv float, analytic BC", E, 368, first, "analytic"),
        # 4. other recipes
        Recipe("Percentile, 7-bit weights (reduce_range)", P, reduce_range=True),
        Recipe("Percentile, 7-bit weights, analytic BC", P, reduce_range=True, bias="analytic"),
        Recipe(
            "Percentile, first conv 7-bit weights",
            P,
            extra={"first_conv_reduce_range": True},
        ),
        Recipe(
            "Percentile 99.99, all int8",
            P,
            extra={},
            calib={"CalibPercentile": 99.99},
        ),
        Recipe(
            "Percentile, QDQKeepRemovableActivations",
            P,
            extra={"QDQKeepRemovableActivations": True},
        ),
        Recipe(
            "Percentile, 16-bit activations on the 3 least accurate tensors",
            P,
            extra={"uint16_tensors": 3},
        ),
    ]


def groups(graph: Any) -> dict[str, list[str]]:
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    return {
        "none": [],
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


def group_recipes() -> list[Recipe]:
    keep = ("classifier head float", "17 projection convolutions float")
    keep += ("projections and the 10 Adds float", "16 expansion convolutions float")
    return [
        Recipe(f"Percentile, {g}", exclude=g) for g in (*keep, "17 depthwise convolutions float")
    ]


def session(path: Path | bytes, threads: int, level: str = "ORT_ENABLE_ALL"):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def labels(sess, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: x[i : i + 16]})[0].argmax(1) for i in range(0, len(x), 16)]
    )


def keras_labels(folder: Path, crops: np.ndarray) -> np.ndarray:
    """Keras' labels of the unseen crops (cached: TensorFlow runs once per folder)."""
    cached = folder / "keras_unseen_labels.npy"
    if not cached.exists():
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already set up by the export
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from portanet.export.keras.load import load_keras

        model = load_keras(FIXTURE).model
        got = [
            np.asarray(model(crops[i : i + 16], training=False)).argmax(1)
            for i in range(0, len(crops), 16)
        ]
        np.save(cached, np.concatenate(got))
    return np.load(cached)


class Builder:
    """Quantizes the pre-processed float model by recipe, from cached calibration ranges."""

    def __init__(self, folder: Path, pre: Path, calibration: np.ndarray, threads: int) -> None:
        import onnx

        from portanet.optimize.sensitivity import output_nodes

        self.folder, self.pre, self.calibration, self.threads = folder, pre, calibration, threads
        self.model = onnx.load(str(pre))
        self.input = self.model.graph.input[0].name
        self.groups = groups(self.model.graph)
        self.outputs = output_nodes(pre)

    def excluded(self, recipe: Recipe) -> list[str]:
        return self.groups[recipe.exclude] + (self.outputs if recipe.outputs_float else [])

    def cache(self, recipe: Recipe) -> Path:
        tag = "".join(f".{k}{v}" for k, v in sorted(recipe.calib.items()))
        return self.folder / f"ranges.{recipe.method}.{recipe.calibration}{tag}.json"

    def mse_cache(self, recipe: Recipe) -> Path:
        """Ranges with the least 8-bit quantization error per activation tensor: a histogram
        of each tensor over its min-max range on the calibration crops, and the clipping of
        that range (both ends scaled by the same factor) whose uint8 quantization has the
        smallest mean squared error. Written as a MinMax calibration cache."""
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import (
            TensorData,
            TensorsData,
            load_tensors_data,
            save_tensors_data,
        )

        from portanet.optimize import activations

        target = self.cache(recipe)
        if target.exists():
            return target
        minmax = Recipe("minmax", "MinMax", recipe.calibration)
        self.quantize(minmax, self.model, self.folder / "minmax.tmp.onnx", [])
        extremes = load_tensors_data(self.cache(minmax))
        inits = {i.name for i in self.model.graph.initializer}
        names = [n for n in extremes if n not in inits]
        bins = 2048
        hist = {n: np.zeros(bins) for n in names}
        edges = {}
        for n in names:
            lo, hi = (float(np.asarray(v).ravel()[0]) for v in extremes[n].range_value)
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            edges[n] = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        rows = self.rows(recipe)
        for start in range(0, len(names), 40):  # a few dozen tensors per pass bounds memory
            group = names[start : start + 40]
            session = activations.session(activations.exposing(self.model, group), self.threads)
            for feeds in activations.batches(rows, 8):
                for n, value in zip(group, session.run(group, feeds), strict=True):
                    hist[n] += np.histogram(value, edges[n])[0]
        ranges = {}
        for n in names:
            centres = (edges[n][:-1] + edges[n][1:]) / 2
            lo, hi = edges[n][0], edges[n][-1]
            best = (np.inf, lo, hi)
            for factor in np.linspace(0.2, 1.0, 81):
                a, b = lo * factor, hi * factor
                scale = (b - a) / 255 or 1.0
                zero = np.round(-a / scale)
                q = np.clip(np.round(centres / scale) + zero, 0, 255)
                mse = float((hist[n] * (centres - (q - zero) * scale) ** 2).sum())
                if mse < best[0]:
                    best = (mse, a, b)
            ranges[n] = TensorData(lowest=np.float32(best[1]), highest=np.float32(best[2]))
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), target)
        return target

    def rows(self, recipe: Recipe) -> dict[str, np.ndarray]:
        return {self.input: self.calibration[: recipe.calibration]}

    def options(self, recipe: Recipe, sensitive: list[str]) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType

        extra: dict[str, Any] = {"WeightSymmetric": True, "CalibStridedMinMax": 16}
        extra |= recipe.calib
        overrides: dict[str, list[dict[str, Any]]] = {}
        for key, value in recipe.extra.items():
            if key == "first_conv_reduce_range":
                first = next(n for n in self.model.graph.node if n.op_type == "Conv")
                overrides[first.input[1]] = [{"axis": 0, "reduce_range": True}]
            elif key == "uint16_tensors":
                for tensor in sensitive[:value]:
                    overrides[tensor] = [{"quant_type": QuantType.QUInt16}]
            else:
                extra[key] = value
        if overrides:
            extra["TensorQuantOverrides"] = overrides
        return extra

    def quantize(self, recipe: Recipe, model: Any, target: Path, sensitive: list[str]) -> None:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        from portanet.optimize.activations import Reader
        from portanet.optimize.quiet import quiet

        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # the quantizer may change the model it is given
        with quiet():
            quantize_static(
                copy,
                str(target),
                Reader(self.rows(recipe), 8),  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(
                    CalibrationMethod, "MinMax" if recipe.method == "MSE" else recipe.method
                ),
                nodes_to_exclude=self.excluded(recipe),
                calibration_cache_path=str(self.cache(recipe)),
                extra_options=self.options(recipe, sensitive),
            )

    def build(self, recipe: Recipe, target: Path, sensitive: list[str]) -> dict[str, Any]:
        import onnx

        from portanet.optimize import bias_correction as bc

        started = time.time()
        if recipe.method == "MSE":
            self.mse_cache(recipe)
        self.quantize(recipe, self.model, target, sensitive)
        info: dict[str, Any] = {}
        if recipe.bias == "analytic":
            qdq = onnx.load(str(target))
            fixes = bc.analytic_shifts(self.model, qdq, self.rows(recipe), threads=self.threads)
            fixed = bc.corrected(self.model, fixes)
            self.quantize(recipe, fixed, target, sensitive)
            again = onnx.load(str(target))
            names = [f.node for f in fixes]
            before, after = bc.dequantized_weights(qdq, names), bc.dequantized_weights(again, names)
            info["weights_unchanged"] = all(np.array_equal(before[n], after[n]) for n in names)
            info["corrected_layers"] = len(fixes)
        elif recipe.bias == "sequential":
            scratch = target.with_suffix(".step.onnx")

            def requantize(model: Any) -> Any:
                self.quantize(recipe, model, scratch, sensitive)
                return onnx.load(str(scratch))

            fixed, fixes = bc.sequential_shifts(
                self.model, requantize, self.rows(recipe), threads=self.threads
            )
            self.quantize(recipe, fixed, target, sensitive)
            scratch.unlink(missing_ok=True)
            info["corrected_layers"] = len(fixes)
        info["build_s"] = round(time.time() - started, 1)
        return info


def least_accurate_tensors(builder: Builder, folder: Path, threads: int) -> list[str]:
    """Activation tensors of the all-int8 Percentile model, worst SQNR drop first (the
    optimizer's own ranking, :func:`portanet.optimize.int8.sensitivity`, mapped to outputs)."""
    import onnx

    from portanet.optimize.sensitivity import sensitivity

    base = folder / "recipe.sensitivity.onnx"
    builder.quantize(Recipe("base"), builder.model, base, [])
    ranked = sensitivity(builder.pre, base, {builder.input: builder.calibration[:8]}, folder)
    nodes = {n.name: n for n in onnx.load(str(builder.pre)).graph.node}
    return [nodes[n].output[0] for n in ranked if n in nodes and nodes[n].op_type == "Conv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per recipe")
    parser.add_argument("--out", type=Path, default=Path("/tmp/int8-recipes"))
    parser.add_argument("--only", default="", help="'|'-separated substrings of recipe names")
    parser.add_argument("--groups", action="store_true", help="also the float-group recipes")
    parser.add_argument("--time", action="store_true", help="time every distinct graph built")
    parser.add_argument("--rebuild", action="store_true", help="build recipes measured before")
    parser.add_argument("--rounds", type=int, default=8, help="alternating timing rounds")
    parser.add_argument(
        "--time-only",
        default="",
        help="with --time: only the graphs of these recipes ('|'-separated exact names)",
    )
    args = parser.parse_args()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from portanet.export import export_model
    from portanet.optimize.quiet import quiet
    from tests.optimize.photos import photo_crops

    folder = args.out
    folder.mkdir(parents=True, exist_ok=True)
    base, pre = folder / "float32.onnx", folder / "pre.onnx"
    if not base.exists():
        export_model(FIXTURE, base)
    if not pre.exists():
        with quiet():
            quant_pre_process(str(base), str(pre))
    calibration, calib_boxes = photo_crops(368, seed=202)
    selection, sel_boxes = photo_crops(240, seed=101)
    unseen, unseen_boxes = photo_crops(240, seed=303)
    assert not (
        set(calib_boxes) & set(sel_boxes) or set(unseen_boxes) & (set(sel_boxes) | set(calib_boxes))
    )
    keras = keras_labels(folder, unseen)
    float_session = session(base, args.threads)
    want = {"sel": labels(float_session, selection), "unseen": labels(float_session, unseen)}
    results_path = folder / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    builder = Builder(folder, pre, calibration, args.threads)
    chosen = recipes() + (group_recipes() if args.groups else [])
    only = [s.strip() for s in args.only.split("|") if s.strip()]
    if only:
        chosen = [r for r in chosen if any(s in r.name for s in only)]
    sensitive: list[str] = []
    today = datetime.date.today().isoformat()
    command = "benchmarks/int8_recipes.py " + " ".join(sys.argv[1:])
    for index, recipe in enumerate(chosen):
        target = folder / f"recipe.{hashlib.sha1(recipe.name.encode()).hexdigest()[:10]}.onnx"
        if recipe.name in results and target.exists() and not args.rebuild:
            continue
        if "uint16_tensors" in recipe.extra and not sensitive:
            sensitive = least_accurate_tensors(builder, folder, args.threads)
        try:
            info = builder.build(recipe, target, sensitive)
        except Exception as exc:  # a recipe onnxruntime refuses: recorded as such
            results[recipe.name] = {"error": " ".join(str(exc).split())[:300], "date": today}
            print(f"{recipe.name}: failed: {exc}", flush=True)
            results_path.write_text(json.dumps(results, indent=2))
            continue
        sess = session(target, args.threads)
        got = {"sel": labels(sess, selection), "unseen": labels(sess, unseen)}
        row = {
            "sel": float(np.mean(got["sel"] == want["sel"])),
            "unseen": float(np.mean(got["unseen"] == want["unseen"])),
            "unseen_keras": float(np.mean(got["unseen"] == keras)),
            "float_nodes": len(builder.excluded(recipe)),
            "structure": recipe.structure(),
            "file": target.name,
            "date": today,
            "command": command,
            **info,
        }
        if "uint16_tensors" in recipe.extra:
            row["uint16"] = sensitive[: recipe.extra["uint16_tensors"]]
        results[recipe.name] = row
        results_path.write_text(json.dumps(results, indent=2))
        print(
            f"[{index + 1}/{len(chosen)}] {recipe.name}: {100 * row['sel']:.2f} % search, "
            f"{100 * row['unseen']:.2f} % unseen ({100 * row['unseen_keras']:.2f} % as Keras) "
            f"{info}",
            flush=True,
        )
    if args.time:
        time_structures(results, folder, base, unseen, args)
        results_path.write_text(json.dumps(results, indent=2))
    print_table(results, float(np.mean(want["unseen"] == keras)), args.threads)


def time_structures(
    results: dict[str, Any], folder: Path, base: Path, x: np.ndarray, args: argparse.Namespace
) -> None:
    """Batch-1 speed-up over float32 of one file per distinct graph, in paired slices."""
    from portanet.optimize.timing import compare

    firsts: dict[str, str] = {}
    wanted = [n for n in args.time_only.split("|") if n]
    for name, row in results.items():
        if wanted and name not in wanted:
            continue
        if "structure" in row and (folder / row["file"]).exists():
            firsts.setdefault(row["structure"], name)
    sessions = {"float32": session(base, args.threads)} | {
        name: session(folder / results[name]["file"], args.threads) for name in firsts.values()
    }
    name = sessions["float32"].get_inputs()[0].name
    one = {name: x[:1]}
    calls: dict[str, Callable[[], Any]] = {
        k: functools.partial(s.run, None, one) for k, s in sessions.items()
    }
    found = compare(
        calls, base="float32", seconds=args.seconds, min_rounds=args.rounds, max_rounds=args.rounds
    )
    today = datetime.date.today().isoformat()
    for structure, first in firsts.items():
        speed = found.speedup(first)
        for row in results.values():
            if row.get("structure") == structure:
                row["speedup_b1"] = speed
                row["timed_as"] = first
                row["timed_date"] = today
                row["timed_threads"] = args.threads
                row["timed_rounds"] = args.rounds


def print_table(results: dict[str, Any], float_keras: float, threads: int) -> None:
    print(f"\nfloat32 export as Keras on the unseen crops: {100 * float_keras:.2f} %")
    print(
        f"\n| recipe | float nodes | search crops | unseen crops (as float32) | unseen, as Keras "
        f"| batch-1 × ({threads} thread) |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        if "error" in row:
            print(f"| {name} | – | failed: {row['error'][:120]} | | | |")
            continue
        speed = row.get("speedup_b1")
        timing = f"×{speed[1]:.2f} ({speed[0]:.2f}–{speed[2]:.2f})" if speed else "–"
        if speed and row.get("timed_as") != name:
            timing += " (same graph)"
        print(
            f"| {name} | {row['float_nodes']} | {100 * row['sel']:.2f} % "
            f"| {100 * row['unseen']:.2f} % | {100 * row['unseen_keras']:.2f} % | {timing} |"
        )


if __name__ == "__main__":
    main()
