"""Keras → ONNX through tf2onnx, with a parity gate before anything is written.

The Keras model is wrapped in a ``tf.function`` with an explicit input signature, the concrete
function is frozen (variables *and* captured constants such as an adapted Normalization layer's
mean become graph constants, control flow kept so LSTMs still become ONNX ``LSTM`` ops) and
converted with ``tf2onnx.convert.from_graph_def``. The ONNX graph must take exactly the model's
inputs, pass ``onnx.checker`` and load in onnxruntime, and — unless ``verify=False`` — compute
what Keras computes, before it is written atomically to its destination.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portanet import __version__
from portanet import metadata as meta
from portanet.atomic import write_bytes
from portanet.compare import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport
from portanet.errors import ConversionError, InputError, ParityError
from portanet.keras_io import LoadedKeras, load_keras, quiet_tensorflow
from portanet.spec import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER, ModelSchema, TensorSpec

#: Opset written by default: run by every onnxruntime since 1.14, and tf2onnx's newest tested.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 9, 18


@dataclass
class ExportResult:
    """What an export produced."""

    path: Path | None
    onnx_bytes: bytes
    schema: ModelSchema
    report: ParityReport | None
    opset: int
    seconds: float
    loaded: LoadedKeras


def sanitize(name: str, taken: set[str]) -> str:
    """A readable ONNX tensor name from a Keras name: ``[A-Za-z0-9_]``, unique in ``taken``."""
    clean = re.sub(r"[^A-Za-z0-9_]+", "_", name.split(":")[0]).strip("_") or "tensor"
    if clean[0].isdigit():
        clean = f"t_{clean}"
    candidate, index = clean, 1
    while candidate in taken:
        candidate = f"{clean}_{index}"
        index += 1
    taken.add(candidate)
    return candidate


def keras_signature(model: Any) -> tuple[list[TensorSpec], list[str]]:
    """The model's inputs (sanitized names, shapes, dtypes) and sanitized output names."""
    taken: set[str] = set()
    raw_inputs = list(getattr(model, "inputs", None) or [])
    if not raw_inputs:
        raise ConversionError(f"model {getattr(model, 'name', '?')!r}: expected a built model "
                              f"with known inputs, got none (build it or give it an Input)")
    names = list(getattr(model, "input_names", None) or [t.name for t in raw_inputs])
    inputs = []
    for name, tensor in zip(names, raw_inputs):
        shape = tensor.shape
        dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
        dtype = getattr(tensor.dtype, "name", tensor.dtype)
        inputs.append(TensorSpec(sanitize(str(name), taken), tuple(dims), str(dtype)))
    outputs = [sanitize(str(n), taken) for n in _output_names(model)]
    return inputs, outputs


def _output_names(model: Any) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    count = len(model.outputs)
    if len(names) != count:
        names = [getattr(t, "name", f"output_{i}") for i, t in enumerate(model.outputs)]
    return names


def outputs_as_list(result: Any, model: Any) -> list[Any]:
    """Keras call results (tensor, list or dict) as a list in the model's output order."""
    if isinstance(result, dict):
        return [result[n] for n in _output_names(model)]
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def call_model(model: Any, arrays: list[Any]) -> list[Any]:
    """Call a Keras model in inference mode on positional inputs."""
    return outputs_as_list(model(arrays[0] if len(arrays) == 1 else list(arrays), training=False),
                           model)


def convert(loaded: LoadedKeras, *, opset: int = DEFAULT_OPSET,
            batch_size: int | None = None) -> tuple[Any, list[TensorSpec], list[str]]:
    """Convert a loaded Keras model to an ``onnx.ModelProto`` with readable I/O names."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"--opset: expected {MIN_OPSET}..{MAX_OPSET} (what tf2onnx writes), "
                         f"got {opset}")
    tf = quiet_tensorflow()
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    model = loaded.model
    inputs, output_names = keras_signature(model)
    if batch_size is not None:
        inputs = [TensorSpec(s.name, (batch_size, *s.shape[1:]), s.dtype) for s in inputs]
    signature = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in inputs]

    def forward(*args: Any) -> list[Any]:
        return call_model(model, list(args))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            concrete = tf.function(forward).get_concrete_function(*signature)
            frozen = convert_variables_to_constants_v2(
                concrete, lower_control_flow=False, aggressive_inlining=True)
            graph_def = frozen.graph.as_graph_def()
            tf_inputs = [t.name for t in frozen.inputs]
            tf_outputs = [t.name for t in frozen.outputs]
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def, input_names=tf_inputs, output_names=tf_outputs, opset=opset)
    except (InputError, ConversionError):
        raise
    except Exception as exc:  # tf2onnx / TensorFlow raise many types
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{loaded.path}: tf2onnx could not convert the model: "
                              f"{detail}") from exc
    expected = [f"{s.name}:0" for s in inputs]
    got = [i.name for i in proto.graph.input]
    if sorted(got) != sorted(tf_inputs) or sorted(tf_inputs) != sorted(expected):
        raise ConversionError(f"{loaded.path}: expected the ONNX graph to take exactly the "
                              f"model's inputs {[s.name for s in inputs]}, got {got}")
    if len(tf_outputs) != len(output_names):
        raise ConversionError(f"{loaded.path}: expected {len(output_names)} outputs "
                              f"{output_names}, the converted graph has {len(tf_outputs)}")
    renames = dict(zip(tf_inputs, [s.name for s in inputs]))
    renames.update(zip(tf_outputs, output_names))
    _rename_tensors(proto, renames)
    _name_batch_dimension(proto, dynamic=batch_size is None)
    return proto, inputs, output_names


def _rename_tensors(proto: Any, renames: dict[str, str]) -> None:
    graph = proto.graph
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            value.name = renames.get(value.name, value.name)


def _name_batch_dimension(proto: Any, *, dynamic: bool) -> None:
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dynamic and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def infer_task(model: Any, output_count: int) -> tuple[str | None, float | None]:
    """Guess the task from the last layer's activation: sigmoid → binary, softmax → multiclass."""
    if output_count != 1:
        return None, None
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while layer is not None and getattr(layer, "layers", None) and not hasattr(layer, "activation"):
        layer = layer.layers[-1]
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    units = model.outputs[0].shape[-1]
    if activation == "sigmoid" and units == 1:
        return BINARY_CLASSIFIER, 0.5
    if activation == "softmax" and units and units > 1:
        return MULTICLASS_CLASSIFIER, None
    return None, None


def build_schema(loaded: LoadedKeras, inputs: list[TensorSpec], proto: Any,
                 feature_names: list[str] | None = None) -> ModelSchema:
    """The schema stored in the ONNX file: tensors from the graph, names/task from the source."""
    from portanet.train import SCHEMA_ATTR, read_attributes

    outputs = tuple(TensorSpec(o.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                             for d in o.type.tensor_type.shape.dim))
                    for o in proto.graph.output)
    stored = read_attributes(loaded.path).get(SCHEMA_ATTR, {}) if loaded.format == "h5" else {}
    task, threshold = infer_task(loaded.model, len(outputs))
    names = feature_names or stored.get("feature_names")
    if names and (len(inputs) != 1 or inputs[0].rank != 2 or inputs[0].shape[1] != len(names)):
        raise InputError(f"feature names: expected {inputs[0].shape[-1]} names for input "
                         f"{inputs[0].name!r} {inputs[0].shape}, got {len(names)}: {names}")
    return ModelSchema(
        inputs=tuple(inputs), outputs=outputs,
        feature_names=tuple(names) if names else None,
        task=stored.get("task", task),
        threshold=stored.get("threshold", threshold),
        labels=tuple(stored["labels"]) if stored.get("labels") else None)


def _tool_versions(opset: int) -> dict[str, Any]:
    import onnx
    import tensorflow as tf
    import tf2onnx

    versions = {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__, "opset": opset}
    for name in ("keras", "tf_keras"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def export_model(source: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                 *, opset: int = DEFAULT_OPSET, data: str | os.PathLike[str] | None = None,
                 atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, verify: bool = True,
                 batch_size: int | None = None, feature_names: list[str] | None = None,
                 seed: int = 0, allow_unsafe: bool = False) -> ExportResult:
    """Convert a Keras model file to ONNX, prove parity, then write it atomically.

    ``output`` defaults to the source path with the suffix ``.onnx``. With ``verify=False`` the
    gate is skipped (``report`` is ``None``). A failing gate raises :class:`ParityError` and
    writes nothing. Unsafe source files are refused unless ``allow_unsafe``
    (:mod:`portanet.keras_safety`). Returns the :class:`ExportResult`.
    """
    import onnx

    from portanet.parity import gate_report
    from portanet.runtime import load

    started = time.perf_counter()
    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    target = Path(output) if output else loaded.path.with_suffix(".onnx")
    proto, inputs, _ = convert(loaded, opset=opset, batch_size=batch_size)
    schema = build_schema(loaded, inputs, proto, feature_names)
    _set_metadata(proto, {meta.VERSION: __version__, meta.SCHEMA: schema.to_dict()})
    candidate = _checked_bytes(proto, loaded.path)
    try:
        runtime = load(candidate, providers="cpu")
    except Exception as exc:
        raise ConversionError(f"{loaded.path}: the converted ONNX model does not load in "
                              f"onnxruntime: {exc}") from exc
    report = None
    if verify:
        report = gate_report(loaded, runtime, schema, data=data, atol=atol, rtol=rtol, seed=seed)
        if not report:
            raise ParityError(f"{loaded.path}: {report.failure_message()}", report)
    from portanet.train import METRICS_ATTR, read_attributes

    metrics = read_attributes(loaded.path).get(METRICS_ATTR) if loaded.format == "h5" else None
    _set_metadata(proto, {
        meta.SOURCE: {"file": loaded.path.name, "sha256": loaded.sha256, "format": loaded.format,
                      "keras_version": loaded.keras_version, "loader": loaded.loader},
        meta.TOOLS: _tool_versions(opset),
        meta.PARITY: report.to_dict() if report else {"skipped": True},
        meta.METRICS: metrics,
    })
    final = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(final))
    write_bytes(target, final)
    return ExportResult(target, final, schema, report, opset, time.perf_counter() - started,
                        loaded)


def _set_metadata(proto: Any, values: dict[str, Any]) -> None:
    encoded = meta.encode(values)
    kept = [p for p in proto.metadata_props if p.key not in encoded]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in encoded.items():
        proto.metadata_props.add(key=key, value=value)


def _checked_bytes(proto: Any, source: Path) -> bytes:
    import onnx

    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        detail = str(exc).strip().splitlines()[0][:300]
        raise ConversionError(f"{source}: the converted ONNX model is invalid "
                              f"(onnx.checker): {detail}") from exc
    return data
