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

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet import schema as meta
from portanet._files import refuse_overwrite
from portanet.errors import InputError, ParityError
from portanet.optimize import data as rows_
from portanet.optimize import transforms as tf_
from portanet.optimize.evaluate import Budget, Candidate, measure_errors, outputs_on
from portanet.optimize.timing import alternating, summarize
from portanet.runtime import Model, load

#: Metadata key of the optimization lineage.
LINEAGE = meta.LINEAGE
BASE = "float32"
TARGETS = {"cpu": "cpu", "cuda": "cuda"}


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--report``)."""
        return {
            "chosen": self.chosen.name if self.chosen else None,
            "output": str(self.output) if self.output else None,
            "budget": self.budget.to_dict(),
            "target": self.target,
            "rows": {"calibration": self.calibration_rows, "evaluation": self.evaluation_rows},
            "batch": self.batch,
            "throughput_batch": self.throughput_batch,
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": self.notes,
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
    return keras_outputs(loaded.model, keras_feeds, [s.name for s in specs], outputs)


def _tiled(feeds: rows_.Feeds, rows: int) -> rows_.Feeds:
    """``rows`` rows taken cyclically from ``feeds`` (a timing batch of any size)."""
    index = np.arange(rows) % rows_.rows_of(feeds)
    return rows_.take(feeds, index)


def optimize_model(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    max_abs: float = 1e-3,
    min_agreement: float = 0.99,
    target: str = "cpu",
    transforms: str | list[str] | tuple[str, ...] = tf_.TRANSFORMS,
    calibration_rows: int = 128,
    seconds: float = 1.0,
    throughput_batch: int = 64,
    threads: int | None = None,
    seed: int = 0,
    allow_unsafe: bool = False,
    transformed_only: bool = False,
) -> OptimizeResult:
    """Try the ``transforms`` on ``model`` and write the fastest candidate inside the budget.

    ``data`` holds rows (see :func:`portanet.optimize.data.load_rows`); ``calibration_rows`` of
    them (at most half) calibrate int8 static quantization, the others measure every candidate.
    The budget: max abs error ≤ ``max_abs`` against the float32 model (and against Keras when
    ``source`` is given) and, for classifiers, label agreement ≥ ``min_agreement``. Latency is
    timed on ``target`` (``cpu`` or ``cuda``), about ``seconds`` per candidate. ``output``
    defaults to ``MODEL.optimized.onnx``. The unchanged float32 model competes too (it wins
    when nothing is faster) unless ``transformed_only``. Raises :class:`ParityError`
    (``.report`` is the :class:`OptimizeResult`) and writes nothing when no candidate is inside
    the budget.
    """
    if target not in TARGETS:
        raise InputError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    default = Path(model).with_name(Path(model).stem + ".optimized.onnx")
    reads = {"MODEL": model, "--data": data, "--source": source}
    refuse_overwrite({"--output": output or default}, reads)
    budget = Budget(max_abs, min_agreement)
    budget.check()
    if seconds <= 0 or throughput_batch < 1 or calibration_rows < 1:
        raise InputError(
            f"expected seconds > 0, a throughput batch ≥ 1 and calibration rows ≥ "
            f"1, got {seconds}, {throughput_batch} and {calibration_rows}"
        )
    names = tf_.parse_try(transforms)
    base_path = Path(model)
    base = load(base_path, providers=TARGETS[target], strict=True, threads=threads)
    feeds = rows_.load_rows(data, base)
    calibration, evaluation = rows_.split_rows(feeds, calibration_rows, seed)
    fixed = rows_.fixed_batch(base)
    batch, big = (fixed, fixed) if fixed else (1, min(throughput_batch, rows_.rows_of(evaluation)))
    reference = outputs_on(base, evaluation, fixed)
    keras = _keras_reference(source, evaluation, base, allow_unsafe) if source else None
    base_bytes = base_path.read_bytes()
    candidates = [Candidate(BASE, (), len(base_bytes), path=base_path)]
    models: dict[str, Model] = {BASE: base}
    with tempfile.TemporaryDirectory(prefix="portanet-optimize-") as scratch:
        folder = Path(scratch)
        copy = folder / "base.onnx"
        copy.write_bytes(base_bytes)
        for chain in tf_.chains(names):
            candidate = Candidate("+".join(chain), chain)
            candidates.append(candidate)
            try:
                candidate.path = tf_.build(
                    chain,
                    copy,
                    folder,
                    calibration=calibration,
                    providers=base.providers,
                    fixed_batch=fixed,
                )
                candidate.size_bytes = tf_.file_size(candidate.path)
                models[candidate.name] = load(
                    candidate.path, providers=TARGETS[target], strict=True, threads=threads
                )
            except Exception as exc:  # a library that cannot handle this graph
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                candidate.error = f"{type(exc).__name__}: {first[:200]}"
        base_outputs: dict[str, dict[str, np.ndarray]] = {}
        for candidate in candidates:
            if candidate.error is None:
                try:
                    got = outputs_on(models[candidate.name], evaluation, fixed)
                except Exception as exc:
                    candidate.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    continue
                measure_errors(candidate, reference, got, keras, base.schema, budget)
                base_outputs[candidate.name] = got
        _time(candidates, models, evaluation, batch, big, seconds)
        chosen = _choose(candidates[1:] if transformed_only else candidates)
        result = OptimizeResult(
            candidates,
            chosen,
            None,
            budget,
            target,
            rows_.rows_of(calibration),
            rows_.rows_of(evaluation),
            batch,
            big,
        )
        if chosen is None:
            raise ParityError(
                f"{base_path}: no candidate is inside the budget "
                f"({budget.describe()}); nothing written:\n"
                + "\n".join(f"- {c.name}: {c.verdict()}" for c in candidates[1:]),
                result,
            )
        target_path = (
            Path(output) if output else base_path.with_name(base_path.stem + ".optimized.onnx")
        )
        from portanet.report.payload import chart_payload

        result.lineage = _lineage(
            result,
            base_path,
            base_bytes,
            chart_payload(reference, base_outputs[chosen.name], seed=seed),
        )
        _write(chosen.path, base_bytes, result.lineage, target_path)
        result.output = target_path
    return result


def _time(
    candidates: list[Candidate],
    models: dict[str, Model],
    evaluation: rows_.Feeds,
    batch: int,
    big: int,
    seconds: float,
) -> None:
    ready = [c for c in candidates if c.error is None]
    for size, attribute in ((batch, "latency"), (big, "throughput")):
        feeds = _tiled(evaluation, size)
        calls: dict[str, Callable[[], Any]] = {
            c.name: functools.partial(models[c.name].run, feeds, allow_nan=True) for c in ready
        }
        share = seconds / (2 if big != batch else 1)
        for name, samples in alternating(calls, seconds=share).items():
            setattr(next(c for c in ready if c.name == name), attribute, summarize(size, samples))
        if big == batch:
            for c in ready:
                c.throughput = c.latency
            break
    base = candidates[0]
    for c in ready:
        # the loop above timed every ready candidate, the baseline first among them
        assert base.latency and base.throughput and c.latency and c.throughput
        c.speedup = base.latency.p50_s / c.latency.p50_s
        c.throughput_speedup = c.throughput.rows_per_s / base.throughput.rows_per_s


def _choose(candidates: list[Candidate]) -> Candidate | None:
    inside = [c for c in candidates if c.error is None and c.within_budget]
    return max(inside, key=lambda c: c.speedup or 0.0, default=None)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lineage(
    result: OptimizeResult, base_path: Path, base_bytes: bytes, charts: dict[str, Any]
) -> dict[str, Any]:
    chosen = result.chosen
    assert chosen is not None
    return {
        "base": {"file": base_path.name, "sha256": _sha256(base_bytes)},
        "candidate": chosen.name,
        "transforms": list(chosen.transforms),
        "target": result.target,
        "budget": result.budget.to_dict(),
        "rows": {"calibration": result.calibration_rows, "evaluation": result.evaluation_rows},
        "measured": {k: v for k, v in chosen.to_dict().items() if k not in ("name", "transforms")},
        "speedup": {
            f"batch_{result.batch}": chosen.speedup,
            f"batch_{result.throughput_batch}": chosen.throughput_speedup,
        },
        "candidates": [c.to_dict() for c in result.candidates],
        "tools": tf_.tool_versions(),
        "charts": charts,
    }


def _write(chosen: Path | None, base_bytes: bytes, lineage: dict[str, Any], target: Path) -> None:
    """The chosen file with the base model's metadata and the lineage, written atomically."""
    import onnx

    from portanet._files import write_bytes

    base = onnx.load_from_string(base_bytes)
    proto = onnx.load(str(chosen)) if chosen is not None else base
    kept = {p.key: p.value for p in base.metadata_props}
    kept.update({p.key: p.value for p in proto.metadata_props if p.key not in kept})
    kept[LINEAGE] = json.dumps(lineage, sort_keys=True)
    del proto.metadata_props[:]
    for key, value in kept.items():
        proto.metadata_props.add(key=key, value=value)
    write_bytes(target, proto.SerializeToString())
