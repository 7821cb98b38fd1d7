"""A model's interface and the names portanet stores it under (numpy only).

* :class:`TensorSpec` and :class:`ModelSchema`: tensors, feature names, task, labels.
* The ``portanet.*`` metadata keys written into every exported ``.onnx`` (:func:`encode`,
  :func:`decode`; read from onnxruntime's ``custom_metadata_map``, so the runtime side never needs
  the ``onnx`` package).
* The HDF5 root attributes portanet's trainer writes into its ``.h5`` files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import numpy as np

from portanet.errors import ModelLoadError

#: Tasks portanet knows how to post-process.
BINARY_CLASSIFIER = "binary_classifier"
MULTICLASS_CLASSIFIER = "multiclass_classifier"
REGRESSION = "regression"
TASKS = (BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER, REGRESSION)

# ONNX tensor type strings as onnxruntime reports them ("tensor(float)") → numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def dtype_from_ort(type_string: str) -> str:
    """Return the numpy dtype name for an onnxruntime type string such as ``tensor(float)``."""
    return _ORT_TYPES.get(type_string, type_string)


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: shape with ``None`` (or a symbolic name) for dynamic dims, and a dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype as a numpy dtype."""
        return np.dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["name"]), tuple(data["shape"]), str(data.get("dtype", "float32")))


@dataclass(frozen=True)
class ModelSchema:
    """What a model takes and returns, and how to read its output.

    ``feature_names`` name the columns of a single 2-D input (tabular models); ``task`` is one of
    :data:`TASKS` or ``None``; ``threshold`` applies to binary classifiers; ``labels`` name classes.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_names: tuple[str, ...] | None = None
    task: str | None = None
    threshold: float | None = None
    labels: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``portanet.schema`` metadata value)."""
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "task": self.task,
            "threshold": self.threshold,
            "labels": list(self.labels) if self.labels else None,
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> str:
        """Compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSchema:
        """Inverse of :meth:`to_dict`."""
        names = data.get("feature_names")
        labels = data.get("labels")
        threshold = data.get("threshold")
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in data.get("outputs", [])),
            feature_names=tuple(str(n) for n in names) if names else None,
            task=data.get("task"),
            threshold=float(threshold) if threshold is not None else None,
            labels=tuple(str(n) for n in labels) if labels else None,
            extra=dict(data.get("extra", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelSchema:
        """Parse the ``portanet.schema`` metadata value."""
        return cls.from_dict(json.loads(text))

    def with_io(self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> ModelSchema:
        """A copy whose tensors are replaced (the ONNX file's own are the truth at run time)."""
        return ModelSchema(inputs, outputs, self.feature_names, self.task, self.threshold,
                           self.labels, self.extra)


# --- metadata keys (``metadata_props`` of an exported ONNX file) -----------------------------

VERSION = "portanet.version"
SCHEMA = "portanet.schema"
SOURCE = "portanet.source"
TOOLS = "portanet.tools"
PARITY = "portanet.parity"
METRICS = "portanet.metrics"
#: How an optimized file was derived from its base file (``portanet optimize``).
LINEAGE = "portanet.lineage"

#: Keys whose values are JSON documents.
JSON_KEYS = (SCHEMA, SOURCE, TOOLS, PARITY, METRICS, LINEAGE)
ALL_KEYS = (VERSION, *JSON_KEYS)


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """Turn metadata values into the strings ONNX ``metadata_props`` hold (JSON for structures)."""
    encoded: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        encoded[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return encoded


def decode(raw: Mapping[str, str], *, origin: str = "model") -> dict[str, Any]:
    """Parse the JSON values of a raw metadata map; other keys pass through as strings."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_KEYS:
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ModelLoadError(
                    f"{origin}: metadata key {key!r} should hold JSON, got {value[:60]!r} ({exc})"
                ) from exc
        else:
            decoded[key] = value
    return decoded


def schema_from(decoded: Mapping[str, Any]) -> ModelSchema | None:
    """The :class:`ModelSchema` stored under ``portanet.schema``, if any."""
    data = decoded.get(SCHEMA)
    return ModelSchema.from_dict(data) if isinstance(data, dict) else None


# --- HDF5 root attributes of the ``.h5`` files portanet's trainer writes -----------------------
#: Feature names, task, threshold and labels of the trained model (JSON).
SCHEMA_ATTR = "portanet_schema"
#: Training metrics and run settings (JSON).
METRICS_ATTR = "portanet_metrics"
#: Root attributes read from an ``.h5`` before Keras opens it (Keras' own and portanet's).
H5_ROOT_ATTRIBUTES = ("keras_version", "backend", "model_config", SCHEMA_ATTR, METRICS_ATTR)
