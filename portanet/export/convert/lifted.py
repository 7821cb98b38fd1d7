"""Models under 2 GB: large weights lifted out of the conversion, then put back.

Freezing a graph, grappler and tf2onnx each hold their own copy of every constant, so a
network's conversion used to peak at 14–23× its weights (VGG19: 9.2 GiB for 575 MB). For a
Keras 3 or tf-keras model converted with onnxruntime's clean-up, portanet keeps its large weights
out of all of them, as it does for models over 2 GB (:mod:`portanet.export.convert.external`):

* :func:`lifted_weights` picks the variables of at least ``EXTERNAL_MIN_BYTES`` — except those
  of recurrent layers, which the native ``LSTM``/``GRU``/``RNN`` conversion
  (:mod:`portanet.export.convert.rnn`) reads as constants — and the model is traced with them as
  extra inputs (Keras 3's ``StatelessScope``; a tf-keras model is frozen around them and their
  reads made inputs, :mod:`portanet.export.convert.unfrozen`, or — when one is read another
  way, say inside a ``tf.cond`` — converted with every weight as a constant): the frozen
  ``GraphDef``, grappler and tf2onnx only see a small graph;
* :func:`portanet.export.convert.cleanup.basic_optimize` then writes them, straight from the
  variables, into a temporary external-data file beside the small graph, lets onnxruntime's
  basic offline optimization read both by path (it folds the ``Transpose``/``Reshape`` tf2onnx
  puts on a non-constant convolution kernel into the kernel itself) and write its result with
  external data too, and reads that back into one self-contained graph: the published
  ``.onnx`` is a single file, exactly as before.

The layerwise comparison (which needs tf2onnx's tensor names) and tf2onnx's own clean-up keep
the weights in the graph. Export side only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from portanet.export.convert.external import (
    EXTERNAL_MIN_BYTES,
    INPUT_PREFIX,
    ExternalWeights,
    nbytes,
)


def _layers(layer: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """``layer`` and every layer inside it, depth first, each once (nested models, wrappers
    such as ``Bidirectional`` and ``TimeDistributed``, recurrent cells)."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    inner = list(getattr(layer, "layers", None) or [])
    for name in ("layer", "forward_layer", "backward_layer", "cell"):
        child = getattr(layer, name, None)
        if child is not None and hasattr(child, "weights"):
            inner.append(child)
    for child in inner:
        yield from _layers(child, seen)


def recurrent_variables(model: Any) -> set[int]:
    """``id``s of the variables of the model's recurrent layers (``keras.layers.RNN`` and
    ``Bidirectional``, nested ones included; tf-keras' own for a tf-keras model): the native
    conversion reads them as constants."""
    import importlib

    tf_keras = type(model).__module__.startswith("tf_keras")
    library = importlib.import_module("tf_keras" if tf_keras else "keras")
    kinds = (library.layers.RNN, library.layers.Bidirectional)
    return {id(w) for layer in _layers(model) if isinstance(layer, kinds) for w in layer.weights}


def lifted_for(loaded: Any, cleanup: str, lift_weights: bool = True) -> ExternalWeights | None:
    """The weights a conversion of ``loaded`` (a :class:`~portanet.export.keras.load.LoadedKeras`
    under the protobuf limit) lifts out: :func:`lifted_weights` with onnxruntime's clean-up for
    a model loaded by Keras 3 or tf-keras, else ``None``."""
    if cleanup != "onnxruntime" or not lift_weights or loaded.loader not in ("keras", "tf_keras"):
        return None
    return lifted_weights(loaded.model)


def lifted_weights(model: Any) -> ExternalWeights | None:
    """The variables of a Keras 3 or tf-keras ``model`` to trace as inputs and put back after
    conversion (distinct, at least ``EXTERNAL_MIN_BYTES``, none of a recurrent layer), named by
    number and path (``portanet_external_3_conv1_kernel``); ``None`` when there are none or the
    model is neither. A tf-keras model has no ``StatelessScope``: it is frozen around them
    (:mod:`portanet.export.convert.unfrozen`)."""
    if not type(model).__module__.startswith(("keras", "tf_keras")):
        return None
    recurrent = recurrent_variables(model)
    seen: set[int] = set()
    chosen = []
    for weight in model.weights:
        if id(weight) in seen or id(weight) in recurrent:
            continue
        seen.add(id(weight))
        if nbytes(weight) >= EXTERNAL_MIN_BYTES:
            chosen.append(weight)
    if not chosen:
        return None
    names = [
        f"{INPUT_PREFIX}{index}_" + re.sub(r"[^A-Za-z0-9_]+", "_", str(_path(w))).strip("_")
        for index, w in enumerate(chosen)
    ]
    return ExternalWeights(chosen, names)


def _path(variable: Any) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", "weight"))
