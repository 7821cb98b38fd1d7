"""Layerwise localisation: which Keras layer is the first whose ONNX counterpart differs.

Keras side: every layer's outputs, recorded eagerly through hooks on the layers' ``call``
(:mod:`portanet.export.convert.layertrace`), nested models included. ONNX side: tf2onnx names a
converted tensor after the TensorFlow tensor it came from, and the traced graph says which tensor
each layer returned, so a layer's output is found in the ONNX graph by name; those tensors are added
as extra graph outputs of a copy of the model and run with onnxruntime.

Not every layer keeps a tensor of its own: tf2onnx folds a BatchNormalization into the
convolution before it, a bias into its MatMul, and so on. Such layers are listed as *fused* with
the next layer that has a tensor, and are judged with it. tf2onnx also moves image tensors to
channels-first between convolutions; a layer's ONNX tensor is therefore compared in every axis
order whose shape matches the Keras output, and the closest is kept — a faulty layer differs in
every order, so this never hides a fault.

Inner layers hold larger values than a model's outputs, and float32 rounding grows with them:
a layer's absolute tolerance is ``atol`` times the largest magnitude of its Keras output (at
least 1), its relative tolerance ``rtol``.

The gate runs it on exactly the rows where the outputs differ most (``rows``). Each layer's
error is shown next to that layer's own noise floor — how far its Keras output moves when the
model's inputs are nudged by one float32 ulp, and from the same layer computed in float64 when
the gate built that model — so the table says where a divergence *starts*: the
first layer whose error is far above its noise is where a conversion fault sits; a divergence
that grows layer by layer within the noise is the model's own sensitivity.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from portanet.export.convert.keras_to_onnx import call_model, keras_signature, trace_keras
from portanet.export.convert.layertrace import record_outputs
from portanet.export.convert.rnn import time_major_name
from portanet.export.keras.load import LoadedKeras
from portanet.export.verify.compare import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    NOISE_FACTOR,
    OutputReport,
    compare_output,
)
from portanet.export.verify.noise import nudge, nudgeable
from portanet.export.verify.runners import fixed_batch, keras_specs, run_onnx
from portanet.runtime import load
from portanet.schema import ModelSchema

#: Samples the layerwise run uses (every layer's outputs are held at once).
LAYERWISE_ROWS = 32
LARGE_SAMPLE_ROWS = 4
LARGE_SAMPLE_ELEMENTS = 4096
#: Runs with nudged inputs measuring each layer's noise floor.
NUDGED_RUNS = 2


@dataclass
class LayerRow:
    """One Keras layer output compared with its ONNX tensor."""

    index: int
    layer: str
    class_name: str
    tensor: str
    layout: str
    result: OutputReport
    fused: list[str] = field(default_factory=list)
    #: Largest move of this layer's Keras output when the inputs are nudged by one ulp.
    noise: float | None = None

    @property
    def passed(self) -> bool:
        """True when every element is within tolerance."""
        return self.result.passed

    @property
    def beyond_noise(self) -> bool:
        """Out of tolerance *and* more than NOISE_FACTOR × this layer's noise floor."""
        return not self.passed and (
            self.noise is None or self.result.max_abs > NOISE_FACTOR * self.noise
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "index": self.index,
            "layer": self.layer,
            "class": self.class_name,
            "onnx_tensor": self.tensor,
            "layout": self.layout,
            "fused": self.fused,
            **{k: v for k, v in self.result.to_dict().items() if k != "name"},
            "noise": self.noise,
            "beyond_noise": self.beyond_noise,
        }


@dataclass
class LayerwiseReport:
    """Per-layer errors in graph order; ``first_failure`` is the row to look at."""

    rows: list[LayerRow]
    samples: int
    layers: int
    unmatched: list[str] = field(default_factory=list)
    #: The gate rows compared (indices into the gate's inputs), and where each comes from.
    input_rows: list[int] = field(default_factory=list)
    input_places: list[str] = field(default_factory=list)

    @property
    def first_failure(self) -> LayerRow | None:
        """The first layer (in graph order) whose output is out of tolerance."""
        return next((r for r in self.rows if not r.passed), None)

    @property
    def first_beyond_noise(self) -> LayerRow | None:
        """The first layer out of tolerance by more than NOISE_FACTOR × its own noise floor:
        where a conversion fault starts."""
        return next((r for r in self.rows if r.beyond_noise), None)

    def _on(self) -> str:
        if not self.input_rows:
            return f"on {self.samples} rows"
        shown = ", ".join(
            f"{r} ({p})" if p else str(r)
            for r, p in zip(self.input_rows[:3], self.input_places[:3] or [""] * 3, strict=False)
        )
        more = f" and {len(self.input_rows) - 3} more" if len(self.input_rows) > 3 else ""
        return f"on gate row{'s' if len(self.input_rows) > 1 else ''} {shown}{more}"

    def _blind_spots(self) -> str:
        fused = sum(len(r.fused) for r in self.rows)
        parts = [f"{len(self.rows)} of {self.layers} layers have an ONNX tensor"]
        if fused:
            parts.append(f"{fused} fused away into the next compared layer")
        if self.unmatched:
            shown = ", ".join(self.unmatched[:3]) + (" …" if len(self.unmatched) > 3 else "")
            parts.append(f"not visible: {shown}")
        return "; ".join(parts)

    def summary(self) -> str:
        """One line: where the divergence starts, or that every layer it could compare agrees,
        and where it could not look."""
        if not self.rows:
            return (
                f"layerwise: no layer output could be found in the ONNX graph "
                f"({self.layers} layers traced)"
            )
        row, fault = self.first_failure, self.first_beyond_noise
        where = f"layerwise {self._on()}"
        if row is None:
            return (
                f"{where}: every layer it could compare agrees within tolerance "
                f"({self._blind_spots()})"
            )
        start = fault or row
        fused = f", with fused layers {start.fused}" if start.fused else ""
        noise = f", its noise floor {start.noise:.3g}" if start.noise is not None else ""
        kind = (
            "the divergence starts at"
            if fault is not None
            else "every layer out of tolerance is within its noise floor (the model's own "
            "sensitivity); first out of tolerance:"
        )
        return (
            f"{where}: {kind} {start.layer!r} ({start.class_name}{fused}) → ONNX tensor "
            f"{start.tensor!r}: max abs {start.result.max_abs:.3g}{noise}, "
            f"{start.result.violations} of {start.result.elements} elements "
            f"({self._blind_spots()})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        first = self.first_failure
        fault = self.first_beyond_noise
        return {
            "samples": self.samples,
            "layers": self.layers,
            "input_rows": self.input_rows,
            "input_places": self.input_places,
            "first_failure": first.layer if first else None,
            "first_beyond_noise": fault.layer if fault else None,
            "summary": self.summary(),
            "rows": [r.to_dict() for r in self.rows],
            "unmatched": self.unmatched,
        }


def _views(keras: np.ndarray, onnx_value: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The ways ``onnx_value`` can be laid out as ``keras``: same shape, any axis order with
    the same shape (rank ≤ 5), or the same values with size-1 axes dropped or added."""
    views: list[tuple[str, np.ndarray]] = []
    if onnx_value.ndim == keras.ndim and onnx_value.ndim <= 5:
        for perm in itertools.permutations(range(onnx_value.ndim)):
            moved = tuple(onnx_value.shape[p] for p in perm)
            if moved == keras.shape:
                label = "same" if perm == tuple(range(onnx_value.ndim)) else f"axes {perm}"
                views.append((label, onnx_value.transpose(perm)))
    if (
        not views
        and onnx_value.size == keras.size
        and [d for d in onnx_value.shape if d != 1] == [d for d in keras.shape if d != 1]
    ):
        views.append(("reshaped", onnx_value.reshape(keras.shape)))
    return views


def _best(
    name: str, keras: np.ndarray, onnx_value: np.ndarray, atol: float, rtol: float
) -> tuple[str, OutputReport] | None:
    scale = float(np.nanmax(np.abs(keras), initial=0.0)) if keras.size else 0.0
    atol = atol * max(1.0, scale if np.isfinite(scale) else 1.0)
    scored = [
        (label, compare_output(name, keras, view, atol=atol, rtol=rtol))
        for label, view in _views(keras, onnx_value)
    ]
    if not scored:
        return None
    return min(scored, key=lambda item: (item[1].violations, item[1].max_abs))


def _rows_for(feeds: dict[str, np.ndarray]) -> int:
    rows = len(next(iter(feeds.values())))
    elements = sum(int(np.prod(a.shape[1:])) for a in feeds.values())
    return min(rows, LARGE_SAMPLE_ROWS if elements > LARGE_SAMPLE_ELEMENTS else LAYERWISE_ROWS)


def layerwise_rows(schema: ModelSchema, feeds: dict[str, np.ndarray]) -> int:
    """How many rows a layerwise run compares (every layer's outputs are held at once)."""
    return fixed_batch(schema) or _rows_for(feeds)


def _probe_runtime(probe: Any, onnx_model: bytes | str | os.PathLike[str]) -> Any:
    """onnxruntime on the probe graph; one with external data is written beside the original
    (its data file is found by a path relative to that folder) and loaded from there."""
    import tempfile

    from onnx.external_data_helper import uses_external_data

    if isinstance(onnx_model, bytes) or not any(
        uses_external_data(t) for t in probe.graph.initializer
    ):
        return load(probe.SerializeToString(), providers="cpu")
    folder = Path(onnx_model).parent
    with tempfile.NamedTemporaryFile(
        dir=folder, prefix=".portanet-probe-", suffix=".onnx"
    ) as handle:
        handle.write(probe.SerializeToString())
        handle.flush()
        return load(handle.name, providers="cpu")


def _onnx_aliases(concrete: Any, output_names: list[str]) -> dict[str, str]:
    """TensorFlow tensors whose ONNX name changed: the model outputs got the Keras names."""
    aliases = {}
    for tensor, name in zip(concrete.outputs, output_names, strict=False):
        source = (
            tensor.op.inputs[0] if tensor.op.type == "Identity" and tensor.op.inputs else tensor
        )
        aliases[source.name] = name
    return aliases


def compare_layers(
    loaded: LoadedKeras,
    onnx_model: bytes | str | os.PathLike[str],
    schema: ModelSchema,
    feeds: dict[str, np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    rows: list[int] | None = None,
    where: Any = None,
    seed: int = 0,
    model64: Any = None,
    fixed: frozenset[str] | set[str] = frozenset(),
) -> LayerwiseReport:
    """Compare every Keras layer's output with its ONNX tensor on ``feeds`` (Keras layout, as
    :func:`portanet.export.verify.inputs.gate_inputs` makes them): on the given ``rows`` (the
    gate's worst), else on its first rows; ``where(row)`` names where a row comes from. Each
    layer also gets its noise floor: how far its Keras output moves with the inputs nudged by
    one ulp (twice; never the whole-number inputs named in ``fixed``), and from the same layer of
    ``model64`` (the model in float64) if given."""
    import onnx

    proto = (
        onnx.load_from_string(onnx_model)
        if isinstance(onnx_model, bytes)
        else onnx.load(str(Path(onnx_model)), load_external_data=False)
    )
    spec_inputs, output_names = keras_signature(loaded.model)
    concrete, trace = trace_keras(
        loaded.model, keras_specs(schema), external=getattr(loaded, "external", None)
    )
    aliases = _onnx_aliases(concrete, output_names)
    produced = {name for node in proto.graph.node for name in node.output}
    graph_outputs = {o.name for o in proto.graph.output}

    planned: list[tuple[Any, int, str]] = []  # (call, output index, ONNX tensor)
    fused_before: dict[tuple[str, int], list[str]] = {}
    pending: list[str] = []
    leaves = [c for c in trace.leaves if c.outputs]
    for call in leaves:
        own = [t for t in call.outputs if trace.op_layer.get(t.split(":")[0]) is call]
        if not own:
            continue  # returns its input unchanged (Dropout at inference, Identity, ...)
        matched = False
        for index, tensor in enumerate(call.outputs):
            name = aliases.get(tensor, tensor)
            if name not in produced and time_major_name(name) in produced:
                name = time_major_name(name)  # a recurrent layer's sequence, time-major
            if name in produced or name in graph_outputs:
                planned.append((call, index, name))
                fused_before[(call.key, index)] = pending
                pending, matched = [], True
        if not matched:
            pending = [*pending, call.key]

    count = layerwise_rows(schema, feeds)
    chosen = (
        list(rows[:count]) if rows else list(range(min(count, len(next(iter(feeds.values()))))))
    )
    subset = {k: v[chosen] for k, v in feeds.items()}
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for name in dict.fromkeys(n for _, _, n in planned):
        if name not in graph_outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    onnx_values = run_onnx(_probe_runtime(probe, onnx_model), subset, schema)
    order = [s.name for s in spec_inputs]
    wanted = {call.key for call, _, _ in planned}
    keras_values = record_outputs(
        loaded.model,
        lambda: call_model(loaded.model, [subset[n] for n in order]),
        keep=wanted.__contains__,
    )
    shifted_runs = []
    rng = np.random.default_rng(seed + 104729)
    for _ in range(NUDGED_RUNS if nudgeable(subset, fixed) else 0):
        moved = [nudge(subset, rng, fixed)[n] for n in order]
        shifted_runs.append(
            record_outputs(
                loaded.model,
                partial(call_model, loaded.model, moved),
                keep=wanted.__contains__,
            )
        )
    if model64 is not None:
        wide = {n: a.astype(np.float64) if a.dtype.kind == "f" else a for n, a in subset.items()}
        shifted_runs.append(
            record_outputs(
                model64,
                lambda: call_model(model64, [wide[n] for n in order]),
                keep=wanted.__contains__,
            )
        )

    report_rows: list[LayerRow] = []
    unmatched = list(pending)
    for call, index, name in planned:
        values = keras_values.get(call.key, [])
        label = call.key if len(call.outputs) == 1 else f"{call.key}[{index}]"
        best = (
            _best(label, values[index], onnx_values[name], atol, rtol)
            if index < len(values)
            else None
        )
        if best is None:
            unmatched.append(label)
            continue
        layout, result = best
        noise = None
        for run in shifted_runs:
            shifted = run.get(call.key, [])
            if index < len(shifted) and np.shape(shifted[index]) == np.shape(values[index]):
                delta = np.abs(np.asarray(shifted[index], np.float64) - values[index])
                moved_by = float(np.nan_to_num(delta).max()) if delta.size else 0.0
                noise = moved_by if noise is None else max(noise, moved_by)
        report_rows.append(
            LayerRow(
                len(report_rows) + 1,
                label,
                call.class_name,
                name,
                layout,
                result,
                fused_before.get((call.key, index), []),
                noise,
            )
        )
    places = [where(r) for r in chosen] if where is not None and rows else []
    return LayerwiseReport(
        report_rows, len(chosen), len(leaves), unmatched, chosen if rows else [], places
    )
