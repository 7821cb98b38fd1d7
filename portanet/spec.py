"""Plain descriptions of a model's interface: tensors, feature names and task (numpy only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
