"""A model's interface and the names portanet stores it under (numpy only).

* :class:`TensorSpec` and :class:`ModelSchema`: tensors, feature names, task, labels, image
  preprocessing (:class:`ImageSpec`) and the vocabulary sizes of integer-id inputs.
* The ``portanet.*`` metadata keys written into every exported ``.onnx`` (:func:`encode`,
  :func:`decode`; read from onnxruntime's ``custom_metadata_map``, so the runtime side never needs
  the ``onnx`` package).
* The HDF5 root attributes portanet's trainer writes into its ``.h5`` files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import InputError, ModelLoadError

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


#: Channel orders an image input may expect.
CHANNEL_ORDERS = ("rgb", "bgr")
#: Value ranges by name (what ``--image-range`` accepts besides ``LOW..HIGH``): 8-bit pixels are
#: mapped linearly onto the range, then ``mean``/``std`` (when given) normalise each channel.
NAMED_RANGES: dict[str, dict[str, Any]] = {
    # keras.applications' preprocess_input modes
    "tf": {"value_range": (-1.0, 1.0)},
    "torch": {
        "value_range": (0.0, 1.0),
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    "caffe": {
        "value_range": (0.0, 255.0),
        "mean": (103.939, 116.779, 123.68),
        "std": (1.0, 1.0, 1.0),
        "channel_order": "bgr",
    },
}


@dataclass(frozen=True)
class ImageSpec:
    """How an image file becomes one sample of an image input (recorded at export).

    The decoded image is converted to ``channels`` (1 grey, 3 colour, 4 with alpha) in
    ``channel_order``, resized to ``size`` (height, width) with bilinear filtering, and its
    8-bit values mapped linearly onto ``value_range`` (``(0, 255)`` keeps raw pixels); ``mean``
    and ``std``, when given, then normalise each channel as ``(x - mean) / std``. ``layout`` is
    the graph's: ``"nhwc"`` (Keras) or ``"nchw"``. ``source`` says how it was decided.
    """

    size: tuple[int, int]
    channels: int = 3
    value_range: tuple[float, float] | None = None
    channel_order: str = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "nhwc"
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {
            "size": list(self.size),
            "channels": self.channels,
            "value_range": list(self.value_range) if self.value_range else None,
            "channel_order": self.channel_order,
            "layout": self.layout,
            "source": self.source,
        }
        if self.mean is not None:
            data["mean"] = list(self.mean)
        if self.std is not None:
            data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        """Inverse of :meth:`to_dict`."""
        value_range = data.get("value_range")
        mean, std = data.get("mean"), data.get("std")
        return cls(
            size=(int(data["size"][0]), int(data["size"][1])),
            channels=int(data.get("channels", 3)),
            value_range=(float(value_range[0]), float(value_range[1])) if value_range else None,
            channel_order=str(data.get("channel_order", "rgb")),
            mean=tuple(float(v) for v in mean) if mean else None,
            std=tuple(float(v) for v in std) if std else None,
            layout=str(data.get("layout", "nhwc")),
            source=str(data.get("source", "")),
        )

    def describe(self) -> str:
        """One line for ``inspect``: ``224x224 rgb, -1..1 (Rescaling 'rescaling')``."""
        kind = {1: "grey", 3: self.channel_order, 4: self.channel_order + "a"}.get(
            self.channels, f"{self.channels} channels"
        )
        span = (
            f"{_number(self.value_range[0])}..{_number(self.value_range[1])}"
            if self.value_range
            else "value range unknown"
        )
        if self.mean is not None:
            span += f", then (x - {list(self.mean)}) / {list(self.std or ())}"
        layout = ", channels first" if self.layout == "nchw" else ""
        why = f" ({self.source})" if self.source else ""
        return f"{self.size[0]}x{self.size[1]} {kind}, {span}{layout}{why}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_value_range(text: str) -> dict[str, Any]:
    """``"-1..1"``, ``"0..1"``, ``"0..255"`` or a keras.applications mode (``tf``, ``torch``,
    ``caffe``) as :class:`ImageSpec` fields; a :class:`ValueError` says what was expected."""
    text = text.strip().lower()
    if text in NAMED_RANGES:
        return dict(NAMED_RANGES[text])
    low, sep, high = text.partition("..")
    try:
        if not sep:
            raise ValueError
        low_value, high_value = float(low), float(high)
    except ValueError:
        raise ValueError(
            f"expected LOW..HIGH such as -1..1, 0..1 or 0..255, or one of "
            f"{', '.join(NAMED_RANGES)}, got {text!r}"
        ) from None
    if not low_value < high_value:
        raise ValueError(f"expected LOW < HIGH, got {text!r}")
    largest = float(np.finfo(np.float32).max)
    if not (abs(low_value) <= largest and abs(high_value) <= largest):
        raise ValueError(f"expected bounds inside the float32 range (±{largest:.4g}), got {text!r}")
    return {"value_range": (low_value, high_value)}


def check_unique(names: Any, what: str = "feature names", flag: str = "--feature-names") -> None:
    """Refuse a name given twice: two model slots would read the same column while another
    column is ignored, a silently wrong answer."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names or ()):
        if name in seen:
            raise InputError(
                f"{what}: expected each name once, got {name!r} at positions "
                f"{seen[name] + 1} and {index + 1}; fix {flag}"
            )
        seen[name] = index


@dataclass(frozen=True)
class ModelSchema:
    """What a model takes and returns, and how to read its output.

    ``feature_names`` name the columns of a single 2-D input (tabular models); ``task`` is one of
    :data:`TASKS` or ``None``; ``threshold`` applies to binary classifiers; ``labels`` name classes.
    ``images`` maps an image input's name to its preprocessing; ``vocabulary`` maps an input of
    integer ids (read by an ``Embedding``) to its vocabulary size (ids lie in ``[0, size)``).
    Files written before these fields existed read as empty mappings.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_names: tuple[str, ...] | None = None
    task: str | None = None
    threshold: float | None = None
    labels: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    images: dict[str, ImageSpec] = field(default_factory=dict)
    vocabulary: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_unique(self.feature_names)

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
            **({"images": {k: v.to_dict() for k, v in self.images.items()}} if self.images else {}),
            **({"vocabulary": dict(self.vocabulary)} if self.vocabulary else {}),
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
            images={str(k): ImageSpec.from_dict(v) for k, v in (data.get("images") or {}).items()},
            vocabulary={str(k): int(v) for k, v in (data.get("vocabulary") or {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> ModelSchema:
        """Parse the ``portanet.schema`` metadata value."""
        return cls.from_dict(json.loads(text))

    def with_io(
        self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
    ) -> ModelSchema:
        """A copy whose tensors are replaced (the ONNX file's own are the truth at run time)."""
        return dataclasses.replace(self, inputs=inputs, outputs=outputs)


# --- metadata keys (``metadata_props`` of an exported ONNX file) -----------------------------

VERSION = "portanet.version"
SCHEMA = "portanet.schema"
SOURCE = "portanet.source"
TOOLS = "portanet.tools"
PARITY = "portanet.parity"
METRICS = "portanet.metrics"
#: How an optimized file was derived from its base file (``portanet optimize``).
LINEAGE = "portanet.lineage"
#: How image files become samples of each image input (input name → a
#: :class:`portanet.images.Recipe` as JSON): resize mode, filter and its library, values.
PREPROCESSING = "portanet.preprocessing"

#: The export's own run: seconds and peak RSS per stage, memory estimate (``portanet export``).
EXPORT_RUN = "portanet.export"

#: Keys whose values are JSON documents.
JSON_KEYS = (SCHEMA, SOURCE, TOOLS, PARITY, METRICS, LINEAGE, PREPROCESSING, EXPORT_RUN)
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
