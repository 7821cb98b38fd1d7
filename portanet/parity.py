"""The parity gate: run Keras and ONNX on the same inputs and compare (export side).

Gate inputs are built in the Keras model's layout; :func:`onnx_feeds` turns them into what the
ONNX graph takes (channels-first for inputs exported with ``inputs_as_nchw``) and
:func:`run_onnx` runs a graph with a fixed batch size chunk by chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.compare import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, compare
from portanet.datasets import PIMA_FEATURES, load_pima
from portanet.errors import InputError
from portanet.conversion import call_model, keras_signature
from portanet.io.readers import Columns, read_all
from portanet.keras_io import LoadedKeras, load_keras
from portanet.runtime import Model, load
from portanet.sampling import InputHint, random_array
from portanet.spec import ModelSchema, TensorSpec

#: ``ModelSchema.extra`` key listing the inputs the ONNX graph takes channels-first.
NCHW_KEY = "nchw_inputs"

#: Batch sizes of the random inputs; 1 proves the dynamic batch dimension.
RANDOM_BATCHES = (1, 7, 1024)
#: Batch sizes for models whose samples are large (images, long sequences).
LARGE_SAMPLE_BATCHES = (1, 7, 16)
LARGE_SAMPLE_ELEMENTS = 1024
KERAS_CHUNK = 1024


@dataclass
class GateInputs:
    """Feeds for the gate (one dict input name → array covering all samples) and their origin."""

    feeds: dict[str, np.ndarray]
    description: str


def nchw_inputs(schema: ModelSchema) -> list[str]:
    """Inputs the ONNX graph takes channels-first (exported with ``inputs_as_nchw``)."""
    return list(schema.extra.get(NCHW_KEY, []) if schema.extra else [])


def keras_specs(schema: ModelSchema) -> list[TensorSpec]:
    """The schema's inputs in the Keras model's layout (channels-last)."""
    nchw = set(nchw_inputs(schema))
    return [TensorSpec(s.name, (s.shape[0], s.shape[2], s.shape[3], s.shape[1]), s.dtype)
            if s.name in nchw and s.rank == 4 else s for s in schema.inputs]


def fixed_batch(schema: ModelSchema) -> int | None:
    """The batch size the ONNX graph is fixed to, or ``None`` for a dynamic batch."""
    first = schema.inputs[0].shape[0] if schema.inputs and schema.inputs[0].rank else None
    return first if isinstance(first, int) else None


def onnx_feeds(feeds: dict[str, np.ndarray], schema: ModelSchema) -> dict[str, np.ndarray]:
    """Keras-layout feeds as the ONNX graph takes them (channels-first where exported so)."""
    nchw = set(nchw_inputs(schema))
    return {name: np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if name in nchw else a
            for name, a in feeds.items()}


def run_onnx(runtime: Model, feeds: dict[str, np.ndarray],
             schema: ModelSchema) -> dict[str, np.ndarray]:
    """Run Keras-layout ``feeds`` through an ONNX model; a fixed batch runs chunk by chunk, the
    last chunk padded with its first row (padding rows are dropped from the result)."""
    converted = onnx_feeds(feeds, schema)
    size = fixed_batch(schema)
    if size is None:
        return runtime.run(converted, allow_nan=True)
    rows = len(next(iter(converted.values())))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, rows, size):
        chunk = {k: v[start:start + size] for k, v in converted.items()}
        short = size - len(next(iter(chunk.values())))
        if short:
            chunk = {k: np.concatenate([v, np.repeat(v[:1], short, axis=0)])
                     for k, v in chunk.items()}
        parts.append({k: v[:size - short] for k, v in runtime.run(chunk, allow_nan=True).items()})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def gate_inputs(schema: ModelSchema, *, data: str | os.PathLike[str] | None = None,
                seed: int = 0, batches: tuple[int, ...] | None = None,
                hints: dict[str, InputHint] | None = None) -> GateInputs:
    """The inputs the gate runs, in the Keras model's layout: ``data`` rows when given; the
    bundled Pima rows for a model with the Pima features; plus seeded random batches (sizes
    ``batches``; as many rows in batches of the fixed size of a graph that has one) shaped for
    the model, drawn inside the data's per-column range when there is data, else inside the
    ``hints`` ranges (Embedding vocabularies, pixel ranges; see :mod:`portanet.sampling`)."""
    specs = keras_specs(schema)
    hints = hints or {}
    rng = np.random.default_rng(seed)
    if batches is None:
        elements = sum(int(np.prod([d if isinstance(d, int) else 8 for d in s.shape[1:]]))
                       for s in specs)
        usual = LARGE_SAMPLE_BATCHES if elements > LARGE_SAMPLE_ELEMENTS else RANDOM_BATCHES
        size = fixed_batch(schema)
        batches = (size,) * max(2, -(-sum(usual) // size)) if size else usual
    real: dict[str, np.ndarray] | None = None
    described: list[str] = []
    if data is not None:
        real = _read_data(Path(data), schema, specs)
        described.append(f"{len(next(iter(real.values())))} rows of {Path(data).name}")
    elif schema.feature_names == PIMA_FEATURES or (
            len(specs) == 1 and specs[0].shape[1:] == (len(PIMA_FEATURES),)
            and schema.feature_names is None and _is_pima_sized(specs[0])
            and specs[0].name not in hints):
        real = {specs[0].name: load_pima().features.astype(specs[0].numpy_dtype)}
        described.append(f"{len(real[specs[0].name])} rows of the bundled Pima data")
    parts: list[dict[str, np.ndarray]] = [real] if real else []
    for rows in batches:
        batch = {}
        for spec in specs:
            low = high = None
            if real is not None and real[spec.name].ndim == 2 and len(real[spec.name]):
                low, high = real[spec.name].min(axis=0), real[spec.name].max(axis=0)
            batch[spec.name] = random_array(spec, rows, rng, low, high, hints.get(spec.name))
        parts.append(batch)
    sizes = (f"{len(batches)} random batches of {batches[0]}" if len(set(batches)) == 1
             and len(batches) > 2 else "random batches of " + ", ".join(map(str, batches)))
    described.append(f"{sizes} (seed {seed})")
    ranges = sorted({h.reason for n, h in hints.items() if real is None or n not in real})
    if ranges:
        described.append("ranges from " + "; ".join(ranges))
    feeds = {s.name: np.concatenate([p[s.name] for p in parts]) for s in specs}
    return GateInputs(feeds, "; ".join(described))


def _is_pima_sized(spec: TensorSpec) -> bool:
    return spec.rank == 2 and spec.numpy_dtype.kind == "f"


def _read_data(path: Path, schema: ModelSchema,
               specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Rows for the gate from ``path``: NPZ (one array per input name), NPY, or a table for a
    2-D input. Arrays are in the Keras model's layout and must fit its fixed dimensions."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if len(specs) == 1 and len(archive.files) == 1:
                arrays = {specs[0].name: archive[archive.files[0]]}
            else:
                missing = [s.name for s in specs if s.name not in archive.files]
                if missing:
                    raise InputError(f"{path}: expected arrays named {[s.name for s in specs]}, "
                                     f"got {archive.files} (missing {missing})")
                arrays = {s.name: archive[s.name] for s in specs}
        return {s.name: _fitted(path, s, arrays[s.name]) for s in specs}
    if len(specs) != 1:
        raise InputError(f"{path}: a model with inputs {[s.name for s in specs]} needs --data "
                         f"as an .npz holding one array per input name")
    spec = specs[0]
    if path.suffix.lower() == ".npy" and spec.rank != 2:
        return {spec.name: _fitted(path, spec, np.load(path, allow_pickle=False))}
    if spec.rank != 2 or not isinstance(spec.shape[1], int):
        raise InputError(f"{path}: input {spec.name!r} has shape {spec.shape}; tabular --data "
                         f"fits only 2-D inputs, give an .npy or .npz array instead")
    batch = read_all(path, Columns(schema.feature_names, spec.shape[1], (), spec.numpy_dtype))
    return {spec.name: batch.features}


def _fitted(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    fits = array.ndim == spec.rank and all(
        not isinstance(want, int) or want == got for want, got in zip(spec.shape[1:],
                                                                       array.shape[1:]))
    if not fits or not len(array):
        raise InputError(f"{path}: input {spec.name!r} expects arrays of shape "
                         f"(rows, {', '.join(str(d) for d in spec.shape[1:])}) in the Keras "
                         f"model's layout, got {array.shape}")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: input {spec.name!r} expects numbers, got dtype {array.dtype}")
    return array.astype(spec.numpy_dtype)


def keras_outputs(model: Any, feeds: dict[str, np.ndarray], input_order: list[str],
                  output_names: list[str]) -> dict[str, np.ndarray]:
    """Run Keras in inference mode, in chunks, and return outputs by (sanitized) name."""
    rows = len(next(iter(feeds.values())))
    chunks: list[list[np.ndarray]] = []
    for start in range(0, rows, KERAS_CHUNK):
        arrays = [feeds[n][start:start + KERAS_CHUNK] for n in input_order]
        chunks.append([np.asarray(t) for t in call_model(model, arrays)])
    return {name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(output_names)}


def layer_trace(loaded: LoadedKeras, schema: ModelSchema) -> Any:
    """The layer trace of ``loaded`` (the one its conversion recorded, else a fresh one)."""
    from portanet.conversion import trace_keras

    if getattr(loaded, "trace", None) is None:
        loaded.trace = trace_keras(loaded.model, keras_specs(schema))[1]
    return loaded.trace


def gate_report(loaded: LoadedKeras, runtime: Model, schema: ModelSchema, *,
                data: str | os.PathLike[str] | None = None, atol: float = DEFAULT_ATOL,
                rtol: float = DEFAULT_RTOL, seed: int = 0,
                onnx_model: bytes | str | os.PathLike[str] | None = None,
                layerwise: bool = False) -> ParityReport:
    """Run the gate's inputs through Keras and ONNX and compare every output.

    With ``onnx_model`` (the graph ``runtime`` runs) the report also carries a layerwise
    comparison (:mod:`portanet.layerwise`) when ``layerwise`` is set or the gate failed.
    """
    from portanet.sampling import input_hints

    trace = layer_trace(loaded, schema)
    inputs = gate_inputs(schema, data=data, seed=seed,
                         hints=input_hints(trace, keras_specs(schema)))
    spec_inputs, output_names = keras_signature(loaded.model)
    order = [s.name for s in spec_inputs]
    reference = keras_outputs(loaded.model, inputs.feeds, order, output_names)
    candidate = run_onnx(runtime, inputs.feeds, schema)
    threshold = schema.threshold if schema.threshold is not None else 0.5
    report = compare(reference, candidate, atol=atol, rtol=rtol, task=schema.task,
                     threshold=threshold, inputs_from=inputs.description)
    if onnx_model is not None and (layerwise or not report.passed):
        from portanet.layerwise import compare_layers

        report.layerwise = compare_layers(loaded, onnx_model, schema, inputs.feeds,
                                          atol=atol, rtol=rtol)
    from portanet.report.payload import chart_payload  # the report's scatter and histogram
    report.extra["charts"] = chart_payload(reference, candidate, layerwise=report.layerwise)
    return report


def verify(source: str | os.PathLike[str], onnx_path: str | os.PathLike[str], *,
           data: str | os.PathLike[str] | None = None, atol: float = DEFAULT_ATOL,
           rtol: float = DEFAULT_RTOL, seed: int = 0, allow_unsafe: bool = False,
           layerwise: bool = False) -> ParityReport:
    """Compare a Keras model file with an ONNX file on demand (the ``verify`` command).

    ``layerwise`` adds the per-layer comparison, which also runs by itself when they differ.
    Unsafe source files are refused unless ``allow_unsafe``.
    """
    runtime = load(onnx_path, providers="cpu")
    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    inputs, outputs = keras_signature(loaded.model)
    missing = [s.name for s in inputs if s.name not in runtime.input_names]
    if missing or sorted(outputs) != sorted(runtime.output_names):
        raise InputError(f"{onnx_path}: expected inputs {[s.name for s in inputs]} and outputs "
                         f"{outputs} like {Path(source).name}, got {runtime.input_names} and "
                         f"{runtime.output_names}")
    return gate_report(loaded, runtime, runtime.schema, data=data, atol=atol, rtol=rtol,
                       seed=seed, onnx_model=onnx_path, layerwise=layerwise)
