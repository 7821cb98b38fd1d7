"""The parity gate: run Keras and ONNX on the same inputs and compare (export side)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.compare import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, compare
from portanet.datasets import PIMA_FEATURES, load_pima
from portanet.errors import InputError
from portanet.export import call_model, keras_signature
from portanet.io.readers import Columns, read_all
from portanet.keras_io import LoadedKeras, load_keras
from portanet.runtime import Model, load
from portanet.spec import ModelSchema, TensorSpec

#: Batch sizes of the random inputs; 1 proves the dynamic batch dimension.
RANDOM_BATCHES = (1, 7, 1024)
#: Batch sizes for models whose samples are large (images, long sequences).
LARGE_SAMPLE_BATCHES = (1, 7, 16)
LARGE_SAMPLE_ELEMENTS = 4096
KERAS_CHUNK = 1024


@dataclass
class GateInputs:
    """Feeds for the gate (one dict input name → array covering all samples) and their origin."""

    feeds: dict[str, np.ndarray]
    description: str


def _random_array(spec: TensorSpec, rows: int, rng: np.random.Generator,
                  low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    shape = (rows, *[d if isinstance(d, int) else 8 for d in spec.shape[1:]])
    if spec.numpy_dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(spec.numpy_dtype)
    if low is not None and high is not None:
        return rng.uniform(low, high, size=shape).astype(spec.numpy_dtype)
    if spec.rank == 4:  # images: the [-1, 1] range most image models are trained on
        return rng.uniform(-1.0, 1.0, size=shape).astype(spec.numpy_dtype)
    return rng.standard_normal(shape).astype(spec.numpy_dtype)


def gate_inputs(schema: ModelSchema, *, data: str | os.PathLike[str] | None = None,
                seed: int = 0, batches: tuple[int, ...] | None = None) -> GateInputs:
    """The inputs the gate runs: ``data`` rows when given; the bundled Pima rows for a model with
    the Pima features; plus seeded random batches (sizes ``batches``) shaped for the model,
    drawn inside the data's per-column range when there is data."""
    specs = list(schema.inputs)
    rng = np.random.default_rng(seed)
    if batches is None:
        elements = sum(int(np.prod([d if isinstance(d, int) else 8 for d in s.shape[1:]]))
                       for s in specs)
        batches = LARGE_SAMPLE_BATCHES if elements > LARGE_SAMPLE_ELEMENTS else RANDOM_BATCHES
    real: dict[str, np.ndarray] | None = None
    described: list[str] = []
    if data is not None:
        real = _read_data(Path(data), schema)
        described.append(f"{len(next(iter(real.values())))} rows of {Path(data).name}")
    elif schema.feature_names == PIMA_FEATURES or (
            len(specs) == 1 and specs[0].shape[1:] == (len(PIMA_FEATURES),)
            and schema.feature_names is None and _is_pima_sized(specs[0])):
        real = {specs[0].name: load_pima().features.astype(specs[0].numpy_dtype)}
        described.append(f"{len(real[specs[0].name])} rows of the bundled Pima data")
    parts: list[dict[str, np.ndarray]] = [real] if real else []
    for rows in batches:
        batch = {}
        for spec in specs:
            low = high = None
            if real is not None and real[spec.name].ndim == 2 and len(real[spec.name]):
                low, high = real[spec.name].min(axis=0), real[spec.name].max(axis=0)
            batch[spec.name] = _random_array(spec, rows, rng, low, high)
        parts.append(batch)
    described.append("random batches of " + ", ".join(map(str, batches)) + f" (seed {seed})")
    feeds = {s.name: np.concatenate([p[s.name] for p in parts]) for s in specs}
    return GateInputs(feeds, "; ".join(described))


def _is_pima_sized(spec: TensorSpec) -> bool:
    return spec.rank == 2 and spec.numpy_dtype.kind == "f"


def _read_data(path: Path, schema: ModelSchema) -> dict[str, np.ndarray]:
    specs = list(schema.inputs)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if len(specs) == 1 and len(archive.files) == 1:
                return {specs[0].name: archive[archive.files[0]].astype(specs[0].numpy_dtype)}
            missing = [s.name for s in specs if s.name not in archive.files]
            if missing:
                raise InputError(f"{path}: expected arrays named {[s.name for s in specs]}, "
                                 f"got {archive.files} (missing {missing})")
            return {s.name: archive[s.name].astype(s.numpy_dtype) for s in specs}
    if len(specs) != 1:
        raise InputError(f"{path}: a model with inputs {[s.name for s in specs]} needs --data "
                         f"as an .npz holding one array per input name")
    spec = specs[0]
    if path.suffix.lower() == ".npy" and spec.rank != 2:
        array = np.load(path, allow_pickle=False)
        return {spec.name: array.astype(spec.numpy_dtype)}
    if spec.rank != 2 or not isinstance(spec.shape[1], int):
        raise InputError(f"{path}: input {spec.name!r} has shape {spec.shape}; tabular --data "
                         f"fits only 2-D inputs, give an .npy or .npz array instead")
    batch = read_all(path, Columns(schema.feature_names, spec.shape[1], (), spec.numpy_dtype))
    return {spec.name: batch.features}


def keras_outputs(model: Any, feeds: dict[str, np.ndarray], input_order: list[str],
                  output_names: list[str]) -> dict[str, np.ndarray]:
    """Run Keras in inference mode, in chunks, and return outputs by (sanitized) name."""
    rows = len(next(iter(feeds.values())))
    chunks: list[list[np.ndarray]] = []
    for start in range(0, rows, KERAS_CHUNK):
        arrays = [feeds[n][start:start + KERAS_CHUNK] for n in input_order]
        chunks.append([np.asarray(t) for t in call_model(model, arrays)])
    return {name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(output_names)}


def gate_report(loaded: LoadedKeras, runtime: Model, schema: ModelSchema, *,
                data: str | os.PathLike[str] | None = None, atol: float = DEFAULT_ATOL,
                rtol: float = DEFAULT_RTOL, seed: int = 0) -> ParityReport:
    """Run the gate's inputs through Keras and ONNX and compare every output."""
    inputs = gate_inputs(schema, data=data, seed=seed)
    spec_inputs, output_names = keras_signature(loaded.model)
    order = [s.name for s in spec_inputs]
    reference = keras_outputs(loaded.model, inputs.feeds, order, output_names)
    candidate = runtime.run(inputs.feeds, allow_nan=True)
    threshold = schema.threshold if schema.threshold is not None else 0.5
    return compare(reference, candidate, atol=atol, rtol=rtol, task=schema.task,
                   threshold=threshold, inputs_from=inputs.description)


def verify(source: str | os.PathLike[str], onnx_path: str | os.PathLike[str], *,
           data: str | os.PathLike[str] | None = None, atol: float = DEFAULT_ATOL,
           rtol: float = DEFAULT_RTOL, seed: int = 0, allow_unsafe: bool = False) -> ParityReport:
    """Compare a Keras model file with an ONNX file on demand (the ``verify`` command)."""
    runtime = load(onnx_path, providers="cpu")
    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    inputs, outputs = keras_signature(loaded.model)
    missing = [s.name for s in inputs if s.name not in runtime.input_names]
    if missing or sorted(outputs) != sorted(runtime.output_names):
        raise InputError(f"{onnx_path}: expected inputs {[s.name for s in inputs]} and outputs "
                         f"{outputs} like {Path(source).name}, got {runtime.input_names} and "
                         f"{runtime.output_names}")
    return gate_report(loaded, runtime, runtime.schema, data=data, atol=atol, rtol=rtol,
                       seed=seed)
