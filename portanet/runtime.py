"""Load an exported ONNX model and run it with onnxruntime: no TensorFlow, schema-checked input.

>>> import portanet
>>> model = portanet.load("models/pima_mlp.onnx")
>>> model.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from portanet import metadata as meta
from portanet import providers as prov
from portanet.errors import InputError, ModelLoadError
from portanet.spec import BINARY_CLASSIFIER, ModelSchema, TensorSpec, dtype_from_ort
from portanet.validation import coerce_array, columns_of, stack_features

log = logging.getLogger("portanet")

#: Rows per onnxruntime call when a large batch is cut into chunks (tuned in benchmarks/).
DEFAULT_CHUNK_ROWS = 65536


def _spec_from_arg(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or []))
    return TensorSpec(arg.name, shape, dtype_from_ort(arg.type))


class Model:
    """An ONNX model ready for inference. Create it with :func:`load`.

    Thread-safe: one instance may serve many threads at once.
    """

    def __init__(self, session: ort.InferenceSession, path: Path | None, *,
                 requested_providers: list[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        self._session = session
        self.path = path
        self.chunk_rows = chunk_rows
        origin = str(path) if path else "model"
        raw = dict(session.get_modelmeta().custom_metadata_map)
        #: Decoded metadata: ``portanet.*`` keys as JSON values, others as strings.
        self.metadata: dict[str, Any] = meta.decode(raw, origin=origin)
        inputs = tuple(_spec_from_arg(a) for a in session.get_inputs())
        outputs = tuple(_spec_from_arg(a) for a in session.get_outputs())
        stored = meta.schema_from(self.metadata)
        #: Inputs, outputs, feature names and task; tensors come from the ONNX graph itself.
        self.schema: ModelSchema = (stored.with_io(inputs, outputs) if stored
                                    else ModelSchema(inputs, outputs))
        self.requested_providers = requested_providers
        self._input_names = [t.name for t in inputs]
        self._output_names = [t.name for t in outputs]
        features = self.schema.feature_names
        single = inputs[0] if len(inputs) == 1 else None
        if single is not None and features and (single.rank != 2 or single.shape[1] not in
                                                (None, len(features))):
            features = None  # names that do not describe a 2-D input are ignored
        self._features = features

    @property
    def providers(self) -> list[str]:
        """The execution providers onnxruntime really uses, in priority order."""
        return list(self._session.get_providers())

    @property
    def input_names(self) -> list[str]:
        """Names of the model's inputs."""
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        """Names of the model's outputs."""
        return list(self._output_names)

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Column names of a tabular model's single input, from the export metadata."""
        return self._features

    def prepare(self, x: Any, *, allow_nan: bool = False) -> dict[str, np.ndarray]:
        """Validate ``x`` and return the feeds onnxruntime will receive."""
        specs = self.schema.inputs
        if len(specs) == 1:
            spec = specs[0]
            columns = columns_of(x)
            if columns is not None and not (len(columns) == 1 and spec.name in columns):
                if not self._features:
                    raise InputError(
                        f"input {spec.name!r}: named columns need feature names in the model "
                        f"metadata, and this model has none; pass an array of shape "
                        f"{tuple(spec.shape)} or a dict {{{spec.name!r}: array}}")
                return {spec.name: coerce_array(stack_features(columns, self._features, spec),
                                                spec, allow_nan=allow_nan)}
            if columns is not None:
                x = columns[spec.name]
            return {spec.name: coerce_array(x, spec, allow_nan=allow_nan)}
        columns = columns_of(x)
        if columns is None:
            raise InputError(f"expected a dict of the inputs {self._input_names}, "
                             f"got {type(x).__name__}")
        missing = [n for n in self._input_names if n not in columns]
        unknown = [n for n in columns if n not in self._input_names]
        if missing or unknown:
            raise InputError(f"expected the inputs {self._input_names}, got {list(columns)}"
                             f" (missing {missing}, unknown {unknown})")
        feeds = {s.name: coerce_array(columns[s.name], s, allow_nan=allow_nan) for s in specs}
        sizes = {a.shape[0] for a in feeds.values() if a.ndim}
        if len(sizes) > 1:
            raise InputError(f"expected one batch size for all inputs, got {sorted(sizes)}")
        return feeds

    def run(self, feeds: Any, *, allow_nan: bool = False) -> dict[str, np.ndarray]:
        """Run the model and return every output by name. Large batches run in chunks."""
        checked = self.prepare(feeds, allow_nan=allow_nan)
        return self._run_checked(checked)

    def predict(self, x: Any, *, allow_nan: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Predict: the output array of a single-output model, else a dict name → array."""
        outputs = self.run(x, allow_nan=allow_nan)
        if len(self._output_names) == 1:
            return outputs[self._output_names[0]]
        return outputs

    def _run_checked(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(feeds.values())).shape[0] if feeds else 0
        if rows == 0:
            return self._empty_outputs()
        if rows <= self.chunk_rows:
            results = self._session.run(self._output_names, feeds)
            return dict(zip(self._output_names, results))
        first = self._session.run(
            self._output_names, {k: v[: self.chunk_rows] for k, v in feeds.items()})
        out = {name: np.empty((rows, *part.shape[1:]), dtype=part.dtype)
               for name, part in zip(self._output_names, first)}
        for name, part in zip(self._output_names, first):
            out[name][: self.chunk_rows] = part
        for start in range(self.chunk_rows, rows, self.chunk_rows):
            stop = min(start + self.chunk_rows, rows)
            parts = self._session.run(self._output_names,
                                      {k: v[start:stop] for k, v in feeds.items()})
            for name, part in zip(self._output_names, parts):
                out[name][start:stop] = part
        return out

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        return {s.name: np.empty((0, *[d if isinstance(d, int) else 0 for d in s.shape[1:]]),
                                 dtype=s.numpy_dtype if s.dtype != "str" else object)
                for s in self.schema.outputs}

    def labels_for(self, probabilities: np.ndarray) -> np.ndarray | None:
        """Class decisions for a classifier's output, or ``None`` for other tasks."""
        schema = self.schema
        if schema.task == BINARY_CLASSIFIER:
            threshold = schema.threshold if schema.threshold is not None else 0.5
            return (probabilities.reshape(len(probabilities), -1)[:, 0] >= threshold).astype(np.int64)
        if schema.task == "multiclass_classifier":
            return probabilities.reshape(len(probabilities), -1).argmax(axis=1)
        return None

    def __repr__(self) -> str:
        name = self.path.name if self.path else "<bytes>"
        return f"Model({name!r}, inputs={self._input_names}, outputs={self._output_names})"


def load(path: str | os.PathLike[str] | bytes, *, providers: str | Sequence[str] = "auto",
         strict: bool = False, threads: int | None = None) -> Model:
    """Load an ONNX model for inference.

    ``providers``: ``"auto"`` (TensorRT/CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"tensorrt"`` or a list of onnxruntime provider names. With ``strict=True`` a requested
    provider that onnxruntime did not activate raises :class:`ModelLoadError` instead of the
    silent CPU fallback. ``threads`` defaults to the CPUs this process may use.
    """
    source: Path | None = None
    if isinstance(path, bytes):
        payload: bytes | str = path
    else:
        source = Path(path)
        if not source.exists():
            raise ModelLoadError(f"{source}: no such file (expected an .onnx model)")
        if source.is_dir():
            raise ModelLoadError(f"{source}: expected an .onnx file, got a directory")
        payload = str(source)
    origin = str(source) if source else "model bytes"
    chosen = prov.resolve(providers, ort.get_available_providers())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads and threads > 0 else prov.usable_cpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(payload, sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{origin}: expected a valid ONNX model, onnxruntime says: "
                             f"{first[:300]}") from exc
    model = Model(session, source, requested_providers=chosen)
    active = model.providers
    wanted = [p for p in chosen if p != "CPUExecutionProvider"]
    if wanted and wanted[0] not in active:
        message = (f"{origin}: expected provider {wanted[0]}, onnxruntime is using {active} "
                   f"(available here: {ort.get_available_providers()})")
        if strict:
            raise ModelLoadError(message)
        log.warning(message)
    log.info("%s: running on %s", origin, active[0])
    return model
