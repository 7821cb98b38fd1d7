"""``portanet optimize``: the fastest variant of an ONNX model that stays inside an accuracy
budget the user sets, measured on held-out rows, written with its lineage.

Every candidate (see :mod:`portanet.optimize.transforms`) is built in a scratch folder, run on
the rows of ``data`` that calibration did not see and compared with the float32 model it came
from (and with Keras when the source is given), then timed at batch 1 and at a throughput batch,
all candidates alternating in the same run. The fastest one at batch 1 inside the budget is
written atomically with ``portanet.lineage`` metadata; when none is, nothing is written and
:class:`~portanet.errors.ParityError` carries the table.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet import schema as meta
from portanet._files import refuse_overwrite
from portanet.errors import InputError, ParityError
from portanet.optimize import data as rows_
from portanet.optimize import transforms as tf_
from portanet.optimize.evaluate import (
    BASE,
    Budget,
    Candidate,
    chunk_rows,
    measure_errors,
    outputs_on,
    real_gain,
    time_candidates,
)
from portanet.optimize.int8 import cpu_has_vnni
from portanet.optimize.lineage import lineage_of, write_variant
from portanet.optimize.speed import SpeedCheck
from portanet.optimize.timing import MARGIN
from portanet.options import OptimizeOptions
from portanet.runtime import Model, load
from portanet.runtime.providers import session_options, usable_cpus

#: Metadata key of the optimization lineage.
LINEAGE = meta.LINEAGE
TARGETS = {"cpu": "cpu", "cuda": "cuda"}
#: ``--ops``: ``standard`` keeps to operators any ONNX runtime implements (the default: the
#: written file runs wherever the exported one did); ``any`` also allows onnxruntime-only ones.
OPS = ("standard", "any")
#: ``--goal``: the speed-up that decides — batch 1 latency or rows/s at the throughput batch.
GOALS = ("latency", "throughput")


@dataclass
class OptimizeResult:
    """Every candidate measured, the one chosen (``None`` when none is inside the budget) and
    where it was written."""

    candidates: list[Candidate]
    chosen: Candidate | None
    output: Path | None
    budget: Budget
    target: str
    calibration_rows: int
    evaluation_rows: int
    batch: int
    throughput_batch: int
    lineage: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    ops: str = "standard"
    goal: str = "latency"
    vnni: bool | None = None
    #: Rows the int8 search chose on (disjoint from calibration and evaluation rows).
    selection_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--report``)."""
        return {
            "chosen": self.chosen.name if self.chosen else None,
            "output": str(self.output) if self.output else None,
            "budget": self.budget.to_dict(),
            "target": self.target,
            "rows": {
                "calibration": self.calibration_rows,
                "selection": self.selection_rows,
                "evaluation": self.evaluation_rows,
            },
            "batch": self.batch,
            "throughput_batch": self.throughput_batch,
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": self.notes,
            "ops": self.ops,
            "goal": self.goal,
            "cpu_vnni": self.vnni,
            "margin": MARGIN,
        }


def _keras_reference(
    source: str | os.PathLike[str], feeds: rows_.Feeds, model: Model, allow_unsafe: bool
) -> dict[str, np.ndarray]:
    """Keras' outputs on ``feeds`` (ONNX layout), by output name (imports TensorFlow)."""
    from portanet.export.convert.keras_to_onnx import keras_signature
    from portanet.export.keras.load import load_keras
    from portanet.export.verify.runners import keras_outputs

    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    specs, outputs = keras_signature(loaded.model)
    if sorted(outputs) != sorted(model.output_names) or sorted(s.name for s in specs) != sorted(
        model.input_names
    ):
        raise InputError(
            f"{source}: expected a Keras model with inputs {model.input_names} and "
            f"outputs {model.output_names} like the ONNX model, got "
            f"{[s.name for s in specs]} and {outputs}"
        )
    keras_feeds = rows_.to_keras_layout(feeds, model.schema)
    order = [s.name for s in specs]
    step = chunk_rows(feeds)  # a few images per call: TensorFlow's activations stay small
    parts = [
        keras_outputs(loaded.model, rows_.take(keras_feeds, slice(i, i + step)), order, outputs)
        for i in range(0, rows_.rows_of(feeds), step)
    ]
    return {name: np.concatenate([p[name] for p in parts]) for name in outputs}


#: Input values per timed call at most: a throughput batch of 224×224 images is lowered so that
#: its activations (tens of MB per image) stay within a few hundred megabytes.
MAX_BATCH_VALUES = 1 << 21


def rows_bound(feeds: rows_.Feeds) -> int:
    """Rows of ``feeds`` whose input values stay within :data:`MAX_BATCH_VALUES` (at least 1)."""
    per_row = sum(int(np.prod(v.shape[1:], dtype=np.int64)) for v in feeds.values())
    return max(1, MAX_BATCH_VALUES // max(1, per_row))


def _session(path: Path, providers: list[str], threads: int | None) -> Model:
    """A candidate's session without onnxruntime's memory arena: every run gives its buffers
    back, so a dozen candidates of an image model stay within a few hundred megabytes."""
    import onnxruntime as ort

    options = session_options(threads, memory_arena=False)
    return Model(ort.InferenceSession(str(path), options, providers=providers), path)


def _message(exc: BaseException) -> str:
    """The whole error, on one line (a library's message is never cut mid-word)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def optimize_model(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    options: OptimizeOptions | None = None,
    **changes: Any,
) -> OptimizeResult:
    """Try the transforms of ``options`` (:class:`~portanet.options.OptimizeOptions`, whose
    fields may also be given as keywords, overriding it) on ``model`` and write the fastest
    candidate inside the budget.

    ``data`` holds rows (see :func:`portanet.optimize.data.load_rows`), split three ways
    (:func:`~portanet.optimize.data.split_three`): ``calibration_rows`` of them (at most half)
    calibrate int8 static quantization, half of the rest (the selection rows) judge the int8
    search's recipes and float nodes, and the other half measure every candidate — the verdicts
    and the figures written come from rows no choice was made on. Without ``int8-static`` no
    selection rows are needed and all the held-out rows measure. The budget: max abs error ≤
    ``max_abs`` against the float32 model (and against Keras when ``source`` is given) and, for
    classifiers, label agreement ≥ ``min_agreement``. Latency is timed on ``target`` (``cpu`` or
    ``cuda``) in alternating slices, about ``seconds`` per candidate and batch size, more while
    a verdict is undecided. ``goal`` (``latency``: batch 1; ``throughput``:
    ``throughput_batch``) is the speed-up that decides; a candidate wins only when the low end
    of its per-slice speed-ups (20th percentile) exceeds 1 +
    :data:`~portanet.optimize.timing.MARGIN`, else the float32 model is kept and the result
    says no real gain was found. ``ops="standard"`` (default) chooses only files that any ONNX
    runtime can run; ``"any"`` also allows onnxruntime-only (``com.microsoft``) operators.
    ``output`` defaults to ``MODEL.optimized.onnx``; ``report`` also writes the table as JSON.
    With ``transformed_only`` the fastest transformed candidate inside the budget is chosen even
    without a real gain. Raises :class:`ParityError` (``.report`` is the
    :class:`OptimizeResult`) and writes nothing but the JSON report when no candidate is inside
    the budget.
    """
    opts = dataclasses.replace(options or OptimizeOptions(), **changes)
    default = Path(model).with_name(Path(model).stem + ".optimized.onnx")
    reads = {"MODEL": model, "--data": data, "--source": opts.source}
    refuse_overwrite({"--output": opts.output or default, "--report": opts.report}, reads)
    try:
        result = _optimize(model, data, opts)
    except ParityError as exc:
        if opts.report is not None and isinstance(exc.report, OptimizeResult):
            _write_json(opts.report, exc.report.to_dict())
        raise
    if opts.report is not None:
        _write_json(opts.report, result.to_dict())
    return result


def _write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    import json

    from portanet._files import write_bytes

    write_bytes(Path(path), json.dumps(data, indent=2).encode() + b"\n")


def _optimize(
    model: str | os.PathLike[str], data: str | os.PathLike[str], opts: OptimizeOptions
) -> OptimizeResult:
    target, ops, goal, threads, seed = opts.target, opts.ops, opts.goal, opts.threads, opts.seed
    source, output, seconds = opts.source, opts.output, opts.seconds
    max_abs, min_agreement = opts.max_abs, opts.min_agreement
    calibration_rows, throughput_batch = opts.calibration_rows, opts.throughput_batch
    transformed_only, allow_unsafe = opts.transformed_only, opts.allow_unsafe
    if target not in TARGETS:
        raise InputError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if ops not in OPS:
        raise InputError(f"ops: expected one of {', '.join(OPS)}, got {ops!r}")
    if goal not in GOALS:
        raise InputError(f"goal: expected one of {', '.join(GOALS)}, got {goal!r}")
    budget = Budget(max_abs, min_agreement)
    budget.check()
    if seconds <= 0 or throughput_batch < 1 or calibration_rows < 1:
        raise InputError(
            f"expected seconds > 0, a throughput batch ≥ 1 and calibration rows ≥ "
            f"1, got {seconds}, {throughput_batch} and {calibration_rows}"
        )
    names = tf_.parse_try(opts.transforms)
    base_path = Path(model)
    base = load(base_path, providers=TARGETS[target], strict=True, threads=threads)
    feeds = rows_.load_rows(data, base)
    if "int8-static" in names:
        calibration, selection, evaluation = rows_.split_three(feeds, calibration_rows, seed)
    else:
        calibration, evaluation = rows_.split_rows(feeds, calibration_rows, seed)
        selection = rows_.take(evaluation, slice(0, 0))
    del feeds
    fixed = rows_.fixed_batch(base)
    # The throughput batch repeats the final rows cyclically when it holds more than there are.
    batch, big = (fixed, fixed) if fixed else (1, throughput_batch)
    notes = []
    if not fixed and big > (bounded := rows_bound(evaluation)):
        notes.append(
            f"throughput batch {big} lowered to {bounded} rows to bound memory "
            f"({MAX_BATCH_VALUES:,} input values per call at most)"
        )
        big = bounded
    reference = outputs_on(base, evaluation, fixed)
    keras = _keras_reference(source, evaluation, base, allow_unsafe) if source else None
    base_bytes = base_path.read_bytes()
    vnni = cpu_has_vnni()
    candidates = [Candidate(BASE, (), len(base_bytes), path=base_path)]
    # The float32 model is timed in the same kind of session as every candidate.
    models: dict[str, Model] = {BASE: _session(base_path, base.providers, threads)}

    selected = outputs_on(base, selection, fixed) if rows_.rows_of(selection) else {}

    def judge(path: Path) -> tuple[float | None, float, bool]:
        """The int8 search's verdict, on the selection rows only (against float32)."""
        trial = Candidate("trial", ())
        got = outputs_on(_session(path, base.providers, threads), selection, fixed)
        measure_errors(trial, selected, got, None, base.schema, budget)
        return trial.agreement, float(trial.max_abs or 0.0), trial.within_budget

    # The int8 search's latency-aware step profiles and times at the batch the goal decides by,
    # on the CPU (onnxruntime's CPU kernels are the ones it compares).
    speed = (
        SpeedCheck(
            batch=batch if goal == "latency" else big,
            threads=threads if threads and threads > 0 else usable_cpus(),
            seconds=seconds,
        )
        if target == "cpu"
        else None
    )
    with tempfile.TemporaryDirectory(prefix="portanet-optimize-") as scratch:
        folder = Path(scratch)
        copy = folder / "base.onnx"
        copy.write_bytes(base_bytes)
        for chain in tf_.chains(names):
            candidate = Candidate("+".join(chain), chain)
            candidates.append(candidate)
            try:
                candidate.path, details = tf_.build(
                    chain,
                    copy,
                    folder,
                    calibration=calibration,
                    providers=base.providers,
                    judge=judge,
                    vnni=vnni,
                    fixed_batch=fixed,
                    speed=speed,
                )
                candidate.int8 = details.get("int8")
                candidate.size_bytes = tf_.file_size(candidate.path)
                candidate.nonstandard_ops = tf_.nonstandard_ops(candidate.path)
                models[candidate.name] = _session(candidate.path, base.providers, threads)
            except Exception as exc:  # a library that cannot handle this graph
                candidate.error = _message(exc)
        base_outputs: dict[str, dict[str, np.ndarray]] = {}
        for candidate in candidates:
            if candidate.error is None:
                try:
                    got = outputs_on(models[candidate.name], evaluation, fixed)
                except Exception as exc:
                    candidate.error = _message(exc)
                    models.pop(candidate.name, None)
                    continue
                measure_errors(candidate, reference, got, keras, base.schema, budget)
                base_outputs[candidate.name] = got
                if ops == "standard" and candidate.nonstandard_ops:
                    candidate.excluded = (
                        f"onnxruntime-only ops ({', '.join(candidate.nonstandard_ops)}); "
                        f"--ops any allows them"
                    )
        time_candidates(candidates, models, evaluation, batch, big, seconds)
        result = OptimizeResult(
            candidates,
            None,
            None,
            budget,
            target,
            rows_.rows_of(calibration),
            rows_.rows_of(evaluation),
            batch,
            big,
        )
        result.ops, result.goal, result.vnni = ops, goal, vnni
        result.selection_rows = rows_.rows_of(selection)
        result.notes.extend(notes)
        result.chosen = _choose(result, transformed_only)
        if result.chosen is None:
            raise ParityError(
                f"{base_path}: no candidate is inside the budget "
                f"({budget.describe()}); nothing written:\n"
                + "\n".join(f"- {c.name}: {c.verdict()}" for c in candidates[1:]),
                result,
            )
        chosen = result.chosen
        target_path = (
            Path(output) if output else base_path.with_name(base_path.stem + ".optimized.onnx")
        )
        from portanet.report.payload import chart_payload

        result.lineage = lineage_of(
            result,
            base_path,
            base_bytes,
            chart_payload(reference, base_outputs[chosen.name], seed=seed),
        )
        write_variant(chosen.path, base_bytes, result.lineage, target_path)
        result.output = target_path
    return result


def _choose(result: OptimizeResult, transformed_only: bool) -> Candidate | None:
    def speed(c: Candidate) -> float:
        value = c.speedup if result.goal == "latency" else c.throughput_speedup
        return value or 0.0

    base, others = result.candidates[0], result.candidates[1:]
    inside = [c for c in others if c.error is None and c.within_budget and not c.excluded]
    if transformed_only:
        chosen = max(inside, key=speed, default=None)
        if chosen is not None and not real_gain(chosen, result.goal):
            result.notes.append(
                f"{chosen.name} chosen because --transformed-only asked for it, but it is "
                f"not faster than float32 beyond the measured spread"
            )
        return chosen
    gains = [c for c in inside if real_gain(c, result.goal)]
    if gains:
        return max(gains, key=speed)
    if not base.within_budget:
        return None
    result.notes.append(
        "no real gain found: no candidate inside the budget is faster than float32 beyond "
        f"the measured spread (low end of its per-slice speed-ups > {1 + MARGIN:g}×); "
        "the float32 model is kept"
    )
    return base
