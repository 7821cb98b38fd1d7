"""Keras → ONNX through tf2onnx, with a parity gate before anything is written.

:func:`export_model` loads the model (:mod:`portanet.export.keras.load`), converts it
(:mod:`portanet.export.convert.keras_to_onnx`: frozen ``tf.function`` →
``tf2onnx.convert.from_graph_def``, ops traced to their Keras layers), checks that the graph
passes ``onnx.checker`` and loads in onnxruntime, and — unless ``verify=False`` — that it
computes what Keras computes (:mod:`portanet.export.verify.gate`, with a per-layer comparison
when it does not), before writing it atomically with the schema and provenance as metadata.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portanet import __version__
from portanet import schema as meta
from portanet._files import check_writable, refuse_overwrite, write_bytes
from portanet.errors import ConversionError, InputError, first_line
from portanet.export.convert.keras_to_onnx import DEFAULT_OPSET, convert
from portanet.export.keras.load import LoadedKeras, from_model, load_keras
from portanet.export.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport
from portanet.export.verify.runners import NCHW_KEY
from portanet.schema import (
    BINARY_CLASSIFIER,
    METRICS_ATTR,
    MULTICLASS_CLASSIFIER,
    SCHEMA_ATTR,
    ModelSchema,
    TensorSpec,
)


@dataclass
class ExportResult:
    """What an export produced."""

    path: Path | None
    schema: ModelSchema
    report: ParityReport | None
    opset: int
    seconds: float
    loaded: LoadedKeras


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


def build_schema(
    loaded: LoadedKeras,
    inputs: list[TensorSpec],
    proto: Any,
    feature_names: list[str] | None = None,
    *,
    labels: str | os.PathLike[str] | None = None,
    image_size: tuple[int, int] | None = None,
    image_range: str | None = None,
    channel_order: str | None = None,
    nchw: list[str] | None = None,
) -> ModelSchema:
    """The schema stored in the ONNX file: tensors from the graph, names/task from the source,
    class names (``labels``: a file or comma list), image preprocessing and the vocabulary
    sizes of Embedding inputs (:mod:`portanet.export.recorded`)."""
    from portanet.export.recorded import image_specs, read_labels, vocabulary
    from portanet.export.verify.runners import keras_specs

    outputs = tuple(
        TensorSpec(
            o.name,
            tuple(
                d.dim_value if d.HasField("dim_value") else None
                for d in o.type.tensor_type.shape.dim
            ),
        )
        for o in proto.graph.output
    )
    stored = loaded.portanet_attribute(SCHEMA_ATTR) or {}
    task, threshold = infer_task(loaded.model, len(outputs))
    task, threshold = stored.get("task", task), stored.get("threshold", threshold)
    names = feature_names or stored.get("feature_names")
    if names and (len(inputs) != 1 or inputs[0].rank != 2 or inputs[0].shape[1] != len(names)):
        raise InputError(
            f"feature names: expected {inputs[0].shape[-1]} names for input "
            f"{inputs[0].name!r} {inputs[0].shape}, got {len(names)}: {names}"
        )
    class_names = tuple(stored["labels"]) if stored.get("labels") else None
    if labels is not None:
        units = outputs[0].shape[-1] if len(outputs) == 1 and outputs[0].rank else None
        classes = 2 if task == BINARY_CLASSIFIER else units if isinstance(units, int) else None
        class_names = read_labels(labels, classes)
        if task is None and classes and classes > 1:
            task = MULTICLASS_CLASSIFIER  # named classes of a model that ends without softmax
    probe = ModelSchema(tuple(inputs), outputs, extra={NCHW_KEY: list(nchw)} if nchw else {})
    specs = keras_specs(probe)
    trace = getattr(loaded, "trace", None)
    return ModelSchema(
        inputs=tuple(inputs),
        outputs=outputs,
        feature_names=tuple(names) if names else None,
        task=task,
        threshold=threshold,
        labels=class_names,
        images=image_specs(
            loaded.model,
            trace,
            specs,
            nchw or [],
            image_size=image_size,
            image_range=image_range,
            channel_order=channel_order,
        ),
        vocabulary=vocabulary(trace, specs),
    )


def _tool_versions(opset: int) -> dict[str, Any]:
    import onnx
    import tensorflow as tf
    import tf2onnx

    versions = {
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "opset": opset,
    }
    for name in ("keras", "tf_keras"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def _loaded(source: Any, allow_unsafe: bool) -> LoadedKeras:
    if isinstance(source, LoadedKeras):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_keras(source, allow_unsafe=allow_unsafe)
    return from_model(source)


def export_model(
    source: str | os.PathLike[str] | LoadedKeras | Any,
    output: str | os.PathLike[str] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    data: str | os.PathLike[str] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    verify: bool = True,
    batch_size: int | None = None,
    feature_names: list[str] | None = None,
    seed: int = 0,
    allow_unsafe: bool = False,
    inputs_as_nchw: list[str] | None = None,
    layerwise: bool = False,
    labels: str | os.PathLike[str] | None = None,
    image_size: tuple[int, int] | None = None,
    image_range: str | None = None,
    channel_order: str | None = None,
    tolerance_mode: str = "strict",
    on_stage: Callable[[str], None] | None = None,
) -> ExportResult:
    """Convert a Keras model to ONNX, prove parity, then write it atomically.

    ``source`` is a model file (``.h5``, ``.keras``, SavedModel directory), a
    :class:`~portanet.export.keras.load.LoadedKeras` or a live Keras model (then ``output`` is required).
    ``output`` defaults to the source path with the suffix ``.onnx``. Unsafe source files are
    refused unless ``allow_unsafe`` (:mod:`portanet.export.keras.safety`). ``batch_size`` fixes the
    batch dimension (dynamic otherwise); ``inputs_as_nchw`` names image inputs the ONNX graph
    takes channels-first. With ``verify=False`` the gate is skipped (``report`` is ``None``).
    ``layerwise`` adds the per-layer comparison to the report; it also runs by itself when the
    gate fails. A failing gate raises :class:`ParityError` and writes nothing.

    Recorded for the deployment side: ``labels`` (a file — Teachable Machine's ``labels.txt``,
    one name a line — or a comma list), and for an image input its ``image_size`` (height,
    width), ``image_range`` (``"-1..1"``, ``"0..1"``, ``"0..255"``, ``"tf"``, ``"torch"``,
    ``"caffe"``) and ``channel_order``, each detected from the model where it says so
    (:mod:`portanet.export.recorded`). ``on_stage`` receives each stage's name as it starts.

    ``tolerance_mode`` is ``"strict"`` or ``"noise-floor"`` (:mod:`portanet.export.verify.compare`).
    A model over 2 GB is written with its large weights in ``<output>.data`` beside it
    (:mod:`portanet.export.convert.external`).
    """
    from portanet.export.verify.gate import gate_report
    from portanet.runtime import load

    started = time.perf_counter()
    stage = on_stage or (lambda name: None)
    if layerwise and not verify:
        raise InputError("layerwise comparison: expected the parity gate to run, got verify=False")
    if isinstance(source, (str, os.PathLike)):  # before any work: never write over an input
        default = Path(source).with_suffix(".onnx")  # an .onnx source fails to load instead
        label_file = labels if labels and Path(labels).is_file() else None
        reads = {"SOURCE": source, "--data": data, "--labels": label_file}
        refuse_overwrite({"--output": output or (default if default != Path(source) else None)}, reads)
    stage("loading the Keras model")
    loaded = _loaded(source, allow_unsafe)
    if output is None and loaded.format == "memory":
        raise InputError(
            f"model {loaded.path.name!r}: expected an output path for a model "
            f"that has no file, got none"
        )
    target = Path(output) if output else loaded.path.with_suffix(".onnx")
    check_writable(target)
    stage("converting to ONNX")
    proto, inputs = convert(
        loaded, opset=opset, batch_size=batch_size, inputs_as_nchw=inputs_as_nchw
    )
    nchw = [n.strip() for n in inputs_as_nchw or [] if n.strip()]
    schema = build_schema(
        loaded,
        inputs,
        proto,
        feature_names,
        labels=labels,
        image_size=image_size,
        image_range=image_range,
        channel_order=channel_order,
        nchw=nchw,
    )
    if nchw:
        schema = dataclasses.replace(schema, extra={**schema.extra, NCHW_KEY: nchw})
    _set_metadata(proto, {meta.VERSION: __version__, meta.SCHEMA: schema.to_dict()})
    stage("checking the ONNX model")
    staged = _staged(proto, loaded, target)  # over 2 GB: the graph and its external data
    candidate = staged.path if staged is not None else _checked_bytes(proto, loaded.path)
    try:
        runtime = load(candidate, providers="cpu")
    except Exception as exc:
        raise ConversionError(
            f"{loaded.path}: the converted ONNX model does not load in "
            f"onnxruntime: {first_line(exc)}"
        ) from exc
    report = None
    if verify:  # raises ParityError (carrying the report) when Keras and ONNX differ
        stage("running the parity gate")
        report = gate_report(
            loaded,
            runtime,
            schema,
            data=data,
            atol=atol,
            rtol=rtol,
            seed=seed,
            onnx_model=candidate,
            layerwise=layerwise,
            tolerance_mode=tolerance_mode,
        )
    metrics = loaded.portanet_attribute(METRICS_ATTR)
    parity = report.to_dict() if report else {"skipped": True}
    parity.pop("layerwise", None)  # the per-layer table goes to --report, not the file
    _set_metadata(
        proto,
        {
            meta.SOURCE: {
                "file": loaded.path.name,
                "sha256": loaded.sha256,
                "format": loaded.format,
                "keras_version": loaded.keras_version,
                "loader": loaded.loader,
            },
            meta.TOOLS: _tool_versions(opset),
            meta.PARITY: parity,
            meta.METRICS: metrics,
        },
    )
    # Only metadata changed since the checker ran on the candidate: no second check.
    stage("writing")
    if staged is not None:
        staged.publish(proto)
    else:
        write_bytes(target, proto.SerializeToString())
    return ExportResult(target, schema, report, opset, time.perf_counter() - started, loaded)


def _set_metadata(proto: Any, values: dict[str, Any]) -> None:
    encoded = meta.encode(values)
    kept = [p for p in proto.metadata_props if p.key not in encoded]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in encoded.items():
        proto.metadata_props.add(key=key, value=value)


def _staged(proto: Any, loaded: LoadedKeras, target: Path) -> Any:
    """The graph and its external data staged beside ``target``, checked by ``onnx.checker``
    (:class:`~portanet.export.convert.external.StagedModel`, removed when published or
    dropped); ``None`` for a model that fits in one file."""
    if getattr(loaded, "external", None) is None:
        return None
    from portanet.export.convert.external import StagedModel

    staged = StagedModel(proto, loaded.external, target)
    try:
        staged.check()
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        staged.discard()
        raise ConversionError(
            f"{loaded.path}: the converted ONNX model is invalid (onnx.checker): {first_line(exc)}"
        ) from exc
    return staged


def _checked_bytes(proto: Any, source: Path) -> bytes:
    import onnx

    data = proto.SerializeToString()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise ConversionError(
            f"{source}: the converted ONNX model is invalid (onnx.checker): {first_line(exc)}"
        ) from exc
    return data
