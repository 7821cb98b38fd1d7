"""The models a server serves: loaded with :func:`portanet.load`, described in V2 metadata, and
the check that turns a request's tensors into the feeds ``Model.predict`` would run."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import portanet
from portanet import schema as meta
from portanet.errors import InputError, ModelLoadError
from portanet.schema import TensorSpec
from portanet.serve.protocol import ProtocolError, datatype_of

#: The one version every model is served under (a file is one version).
VERSION = "1"
_NAN_HINT = re.compile(r"\s*\(pass allow_nan=True to let NaN/Inf through\)")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _dims(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape]


@dataclass
class ServedModel:
    """One loaded model under its served name, with what the server needs to batch it."""

    name: str
    model: portanet.Model
    path: Path
    #: The sessions batches run on, each by one thread at a time (``model`` first).
    sessions: list[portanet.Model] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sessions:
            self.sessions = [self.model]
        specs = self.model.schema.inputs
        #: Requests can be stacked along axis 0 when every input has a dynamic first dimension.
        self.batchable = all(s.rank >= 1 and not isinstance(s.shape[0], int) for s in specs)
        self._inputs = {s.name: s for s in specs}
        features = self.model.feature_names
        self._features = set(features) if features and len(specs) == 1 else set()
        self.output_names = self.model.output_names
        self._image: tuple[TensorSpec, Any] | None = None

    def image_input(self) -> tuple[TensorSpec, Any]:
        """The image input and its preparation recorded at export (for ``BYTES`` requests)."""
        if self._image is None:
            from portanet.images import input_recipe

            try:
                self._image = input_recipe(
                    self.model.schema.inputs,
                    self.model.image_recipes,
                    None,
                    f"model {self.name!r}",
                )
            except InputError as exc:
                raise ProtocolError(f"encoded images (BYTES): {exc}") from None
        return self._image

    def _decode_images(
        self, tensors: dict[str, np.ndarray], max_elements: int
    ) -> dict[str, np.ndarray]:
        from portanet.serve.images import decode_images

        decoded = dict(tensors)
        for name, array in tensors.items():
            if array.dtype.kind == "O":
                spec, image = self.image_input()
                if name != spec.name:
                    raise ProtocolError(
                        f"model {self.name!r}: input {name!r}: expected BYTES (encoded images) "
                        f"only for the image input {spec.name!r}"
                    )
                where = f"model {self.name!r}: input {name!r}"
                decoded[name] = decode_images(
                    array, spec, image, max_elements=max_elements, where=where
                )
        return decoded

    def metadata(self) -> dict[str, Any]:
        """The V2 model metadata document (portanet's own metadata under ``parameters``)."""
        schema = self.model.schema
        params: dict[str, Any] = {
            "feature_names": list(schema.feature_names) if schema.feature_names else None,
            "task": schema.task,
            "threshold": schema.threshold,
            "labels": list(schema.labels) if schema.labels else None,
            "providers": self.model.providers,
        }
        for key, value in self.model.metadata.items():
            if key.startswith("portanet.") and key != meta.SCHEMA:
                params[key] = value
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {
                    "name": s.name,
                    "datatype": datatype_of(s.numpy_dtype if s.dtype != "str" else "str"),
                    "shape": _dims(s),
                }
                for s in schema.inputs
            ],
            "outputs": [
                {
                    "name": s.name,
                    "datatype": datatype_of(s.numpy_dtype if s.dtype != "str" else "str"),
                    "shape": _dims(s),
                }
                for s in schema.outputs
            ],
            "parameters": params,
        }

    def prepare(
        self, tensors: dict[str, np.ndarray], *, allow_nan: bool, max_elements: int = 4_000_000
    ) -> tuple[dict[str, np.ndarray], int]:
        """Check a request's tensors and return the feeds and their row count.

        Tensors are named by input, or — for a tabular model with feature names — one tensor
        per feature column. Conversion, rank, fixed sizes and NaN/Inf are judged by
        ``Model.prepare``, the same code ``predict`` runs, so the server answers what
        ``predict`` would.
        """
        names = list(tensors)
        unknown = [n for n in names if n not in self._inputs and n not in self._features]
        if unknown:
            per_column = (
                f" (or one per feature column: {sorted(self._features)})" if self._features else ""
            )
            raise ProtocolError(
                f"model {self.name!r}: unknown input {unknown[0]!r}; expected "
                f"the inputs {list(self._inputs)}{per_column}"
            )
        mixed = any(n in self._inputs for n in names) and any(n in self._features for n in names)
        if mixed:
            raise ProtocolError(
                f"model {self.name!r}: expected either the input "
                f"{list(self._inputs)} or feature columns, got both: {names}"
            )
        if any(a.dtype.kind == "O" for a in tensors.values()):
            tensors = self._decode_images(tensors, max_elements)
        if self._features and names[0] in self._features:
            columns: dict[str, np.ndarray] = {}
            for name, array in tensors.items():
                if array.ndim == 2 and array.shape[1] == 1:
                    array = array[:, 0]
                if array.ndim != 1:
                    raise ProtocolError(
                        f"model {self.name!r}: feature column {name!r}: "
                        f"expected shape [rows] or [rows, 1], got "
                        f"{list(array.shape)}"
                    )
                columns[name] = array
            tensors = columns
        try:
            feeds = self.model.prepare(tensors, allow_nan=allow_nan)
        except InputError as exc:
            message = _NAN_HINT.sub(
                " (this server refuses NaN/Inf; it lets them through only "
                "when started with allow_nan)",
                str(exc),
            )
            raise ProtocolError(f"model {self.name!r}: {message}") from None
        first = next(iter(feeds.values()))
        return feeds, int(first.shape[0]) if first.ndim else 1


def _model_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix == ".onnx" and p.is_file())
        if not files:
            raise ModelLoadError(f"{source}: expected a folder holding .onnx files, got none")
        return files
    if not source.exists():
        raise ModelLoadError(f"{source}: no such file (expected an .onnx model or a folder)")
    return [source]


def load_models(
    sources: Sequence[str | Path],
    *,
    name: str | None = None,
    providers: str | Sequence[str] = "auto",
    threads: int | None = None,
    strict: bool = False,
    sessions: int = 1,
) -> list[ServedModel]:
    """Load every model to serve: each ``.onnx`` file given, and every ``.onnx`` in each folder
    given. A model is named by its file stem, or ``name`` when exactly one model is served.
    Each model is opened ``sessions`` times (batches run on them side by side)."""
    files = [f for source in sources for f in _model_files(Path(source))]
    if name is not None and len(files) != 1:
        raise InputError(
            f"name: expected one model to name, got {len(files)} "
            f"({', '.join(f.name for f in files)})"
        )
    served: list[ServedModel] = []
    seen: dict[str, Path] = {}
    for path in files:
        model_name = name or path.stem
        if not _NAME.match(model_name):
            raise InputError(
                f"{path}: expected a model name of letters, digits, '_', '.' or "
                f"'-', got {model_name!r}"
            )
        if model_name in seen:
            raise InputError(
                f"{path}: the model name {model_name!r} is already served from "
                f"{seen[model_name]}; expected unique file stems"
            )
        seen[model_name] = path
        opened = [
            portanet.load(path, providers=providers, strict=strict, threads=threads)
            for _ in range(max(1, sessions))
        ]
        served.append(ServedModel(model_name, opened[0], path, opened))
    return served
