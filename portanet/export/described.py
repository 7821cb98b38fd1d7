"""What an export records about a model besides its graph: the :class:`ModelSchema` (tensors,
feature names, task, labels, image preprocessing, vocabularies), built from the converted graph,
the source's own attributes and the options given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from portanet.errors import InputError
from portanet.export.keras.load import LoadedKeras
from portanet.export.verify.runners import NCHW_KEY
from portanet.schema import (
    BINARY_CLASSIFIER,
    MULTICLASS_CLASSIFIER,
    SCHEMA_ATTR,
    ModelSchema,
    TensorSpec,
)


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
    trace: Any = None,
) -> ModelSchema:
    """The schema stored in the ONNX file: tensors from the graph, names/task from the source,
    class names (``labels``: a file or comma list), image preprocessing and the vocabulary
    sizes of Embedding inputs (:mod:`portanet.export.recorded`), read from the conversion's layer
    ``trace``."""
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
        class_names = read_labels(labels if isinstance(labels, str) else Path(labels), classes)
        if task is None and classes and classes > 1:
            task = MULTICLASS_CLASSIFIER  # named classes of a model that ends without softmax
    probe = ModelSchema(tuple(inputs), outputs, extra={NCHW_KEY: list(nchw)} if nchw else {})
    specs = keras_specs(probe)
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
