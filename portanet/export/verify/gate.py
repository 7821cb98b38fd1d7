"""The parity gate: run Keras and ONNX on the same inputs and compare every output.

:func:`gate_report` is what ``export`` runs before writing; :func:`verify` compares an existing
Keras file with an existing ONNX file. Both raise :class:`~portanet.errors.ParityError` (carrying
the report) when the outputs differ, so a failing gate reads the same everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError, ParityError, first_line
from portanet.export.keras.load import LoadedKeras, load_keras
from portanet.export.verify.compare import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    STRICT,
    ParityReport,
    check_tolerance_mode,
    compare,
)
from portanet.export.verify.hints import input_hints
from portanet.export.verify.inputs import GateInputs, SmallerSizes, gate_inputs
from portanet.export.verify.noise import NoiseFloor, add_float64, measure, refine
from portanet.export.verify.runners import KerasRunner, OnnxRunner, keras_specs
from portanet.runtime import Model, load
from portanet.schema import ModelSchema


def layer_trace(loaded: LoadedKeras, schema: ModelSchema) -> Any:
    """A fresh layer trace of ``loaded`` (for a model no conversion traced in this process)."""
    from portanet.export.convert.keras_to_onnx import trace_keras

    return trace_keras(loaded.model, keras_specs(schema))[1]


@dataclass(frozen=True)
class GateReport:
    """What one run of the gate produced, complete when built: the :class:`ParityReport`
    (``report``) and the outputs it compared, by output name (``reference``: Keras,
    ``candidate``: ONNX) — from which the HTML report computes its own charts
    (:func:`portanet.report.payload.chart_payload`)."""

    report: ParityReport
    reference: dict[str, np.ndarray]
    candidate: dict[str, np.ndarray]

    @property
    def passed(self) -> bool:
        """True when every output passed."""
        return self.report.passed


def gate_report(
    loaded: LoadedKeras,
    runtime: Model,
    schema: ModelSchema,
    **options: Any,
) -> ParityReport:
    """The :class:`ParityReport` of :func:`run_gate` (same arguments)."""
    return run_gate(loaded, runtime, schema, **options).report


def run_gate(
    loaded: LoadedKeras,
    runtime: Model,
    schema: ModelSchema,
    *,
    data: str | os.PathLike[str] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    onnx_model: bytes | str | os.PathLike[str] | None = None,
    layerwise: bool = False,
    tolerance_mode: str = STRICT,
    trace: Any = None,
    external: Any = None,
) -> GateReport:
    """Run the gate's inputs through Keras and ONNX, compare every output next to the measured
    noise floor (:mod:`portanet.export.verify.noise`), and raise :class:`ParityError` (with the
    report) when they differ beyond tolerance — in ``tolerance_mode`` ``"strict"`` (default) or
    ``"noise-floor"`` (see :mod:`portanet.export.verify.compare`).

    The report names the worst input (its batch and row) and output element. With
    ``onnx_model`` (the graph ``runtime`` runs) it also carries a layerwise comparison
    (:mod:`portanet.export.verify.layerwise`) on exactly the worst rows, when ``layerwise`` is
    set or the gate failed. ``trace`` is the conversion's layer trace (traced afresh when
    ``None``); ``external`` the large weights the conversion kept outside the graph.
    """
    check_tolerance_mode(tolerance_mode)
    trace = trace if trace is not None else layer_trace(loaded, schema)
    keras = KerasRunner(loaded.model)
    inputs = gate_inputs(
        schema, data=data, seed=seed, hints=input_hints(trace, keras_specs(schema)), probe=keras.run
    )
    onnx = OnnxRunner(runtime, schema)
    settings = {
        "atol": atol,
        "rtol": rtol,
        "task": schema.task,
        "threshold": schema.threshold if schema.threshold is not None else 0.5,
        "tolerance_mode": tolerance_mode,
    }
    reference, candidate, floor, report = _compared(loaded, keras, onnx, inputs, seed, settings)
    if report and inputs.smaller is not None:
        report = _smaller_sizes(loaded, keras, onnx, inputs.smaller, seed, settings, report)
    if onnx_model is not None and (layerwise or not report.passed):
        from portanet.export.verify.layerwise import compare_layers, layerwise_rows

        rows = report.worst_rows(layerwise_rows(schema, inputs.feeds))
        with_weights = dataclasses.replace(loaded, external=external)  # layerwise reads it
        table = compare_layers(
            with_weights,
            onnx_model,
            schema,
            inputs.feeds,
            atol=atol,
            rtol=rtol,
            rows=rows,
            where=report.where,
            seed=seed,
            model64=floor.model64,
            fixed=inputs.integer,
        )
        report = dataclasses.replace(report, layerwise=table)
    if not report:
        raise ParityError(f"{loaded.path}: {report.failure_message()}", report)
    return GateReport(report, dict(reference), dict(candidate))


def _smaller_sizes(
    loaded: LoadedKeras,
    keras: KerasRunner,
    onnx: OnnxRunner,
    smaller: SmallerSizes,
    seed: int,
    settings: dict[str, Any],
    report: ParityReport,
) -> ParityReport:
    """Compare at the smallest of ``smaller``'s sizes that onnxruntime runs (raising
    :class:`ParityError` when they differ there), and say in ``report``'s description which
    size it was and which smaller sizes Keras runs but onnxruntime refuses (with an error,
    never an answer: such inputs fail loudly in portanet too)."""
    refused: list[tuple[int, str]] = []
    for size in smaller.sizes:
        inputs = smaller.at(size)
        try:
            onnx.run(inputs.feeds)
        except InputError as exc:  # onnxruntime cannot run the graph at this size; Keras can
            refused.append((size, first_line(exc, 200)))
            continue
        small = _compared(loaded, keras, onnx, inputs, seed, settings)[3]
        if not small:
            raise ParityError(f"{loaded.path}: {small.failure_message()}", small)
        said = f"also at {size}×{size} (random batches of 1, 7): max abs error {small.max_abs:.2g}"
        break
    else:
        said = "no smaller size that Keras runs also runs in onnxruntime"
    if refused:
        first, message = refused[0]
        sizes = ", ".join(f"{s}×{s}" for s, _ in refused)
        said += (
            f"; onnxruntime refuses the graph at {sizes}, which Keras runs (at {first}×{first}: "
            f"{message}): such inputs fail with an error"
        )
    return dataclasses.replace(report, inputs_from=f"{report.inputs_from}; {said}")


def _compared(
    loaded: LoadedKeras,
    keras: KerasRunner,
    onnx: OnnxRunner,
    inputs: GateInputs,
    seed: int,
    settings: dict[str, Any],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], NoiseFloor, ParityReport]:
    """Keras' and ONNX's outputs for ``inputs``, the noise floor around Keras' and the
    comparison: violations are explained against Keras in float64, then looked at closer."""
    reference = keras.run(inputs.feeds)
    candidate = onnx.run(inputs.feeds)
    floor = measure(keras.run, inputs.feeds, reference, seed=seed, fixed=inputs.integer)

    def compared() -> ParityReport:
        return compare(
            reference,
            candidate,
            inputs_from=inputs.description,
            noise=floor.per_output,
            **settings,
        )

    report = compared()
    if any(o.violations for o in report.outputs):  # explain it: Keras against float64 too
        add_float64(floor, loaded.model, inputs.feeds, reference)
        report = compared()
        unexplained = sorted(
            {r for o in report.outputs if o.unexplained for r in o.unexplained_rows}
        )
        if unexplained:  # a closer look where the first samples did not explain the error
            refine(floor, keras.run, inputs.feeds, reference, unexplained, seed=seed)
            report = compared()
    report = dataclasses.replace(
        report, noise=floor.to_dict(), batches=inputs.batches, synthetic=inputs.synthetic
    )
    return reference, candidate, floor, report


def verify(
    source: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    allow_unsafe: bool = False,
    layerwise: bool = False,
    tolerance_mode: str = STRICT,
) -> ParityReport:
    """Compare a Keras model file with an ONNX file on demand (the ``verify`` command); raises
    :class:`ParityError` like the export gate when they differ.

    ``layerwise`` adds the per-layer comparison, which also runs by itself when they differ;
    ``tolerance_mode`` as for :func:`gate_report`.
    Unsafe source files are refused unless ``allow_unsafe``.
    """
    runtime = load(onnx_path, providers="cpu")
    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    keras = KerasRunner(loaded.model)
    missing = [n for n in keras.input_order if n not in runtime.input_names]
    if missing or sorted(keras.output_names) != sorted(runtime.output_names):
        raise InputError(
            f"{onnx_path}: expected inputs {keras.input_order} and outputs "
            f"{keras.output_names} like {Path(source).name}, got "
            f"{runtime.input_names} and {runtime.output_names}"
        )
    return gate_report(
        loaded,
        runtime,
        runtime.schema,
        data=data,
        atol=atol,
        rtol=rtol,
        seed=seed,
        onnx_model=onnx_path,
        layerwise=layerwise,
        tolerance_mode=tolerance_mode,
    )
