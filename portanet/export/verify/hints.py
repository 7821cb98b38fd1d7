"""Where the gate's random inputs are drawn from: the value range each Keras model input
expects, read from the layer that first uses it (export side).

An input read by an ``Embedding`` (directly or through a pass-through op) takes whole ids below
its vocabulary size; a ``Rescaling`` by 1/255 or 1/127.5 takes pixels in [0, 255]; a
``Normalization`` takes values around its own mean and variance. :func:`input_hints` finds
these from the conversion's layer trace; :func:`integer_inputs` names the inputs holding whole
numbers, which the noise floor never nudges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from portanet.schema import TensorSpec

#: Ops that pass a model input on unchanged in value (walked back to find the input).
_PASS_THROUGH = {"Identity", "Cast", "ExpandDims", "Squeeze", "Reshape"}
#: A Rescaling scale at most this small means 8-bit pixels are expected.
_PIXEL_SCALE = 0.1


@dataclass(frozen=True)
class InputHint:
    """The range random values for one input are drawn from, and why."""

    low: Any
    high: Any
    integer: bool = False
    reason: str = ""


def source_input(tensor: Any) -> str | None:
    """The name of the placeholder (model input) a tensor is a pass-through copy of."""
    op = getattr(tensor, "op", None)
    for _ in range(8):
        if op is None:
            return None
        if op.type == "Placeholder":
            return str(op.name)
        if op.type not in _PASS_THROUGH or not op.inputs:
            return None
        op = op.inputs[0].op
    return None


def _as_sample(value: Any, spec: TensorSpec) -> np.ndarray:
    sample = tuple(d if isinstance(d, int) else 1 for d in spec.shape[1:])
    array = np.asarray(value, dtype=np.float64)
    return (
        np.broadcast_to(array, (1, *sample))[0]
        if array.ndim > len(sample)
        else np.broadcast_to(array, sample)
    )


def _hint_for(layer: Any, class_name: str, spec: TensorSpec) -> InputHint | None:
    if class_name == "Embedding" and getattr(layer, "input_dim", None):
        return InputHint(0, int(layer.input_dim), True, f"Embedding {layer.name!r} vocabulary")
    if class_name == "CategoryEncoding" and getattr(layer, "num_tokens", None):
        return InputHint(
            0, int(layer.num_tokens), True, f"CategoryEncoding {layer.name!r} categories"
        )
    if class_name == "IntegerLookup":
        values: list[Any] = list(getattr(layer, "get_vocabulary", lambda: [])())
        known = [int(v) for v in values if isinstance(v, (int, np.integer)) and v >= 0]
        if known:
            return InputHint(0, max(known) + 1, True, f"IntegerLookup {layer.name!r} vocabulary")
    if class_name == "Rescaling":
        scale = np.abs(np.asarray(getattr(layer, "scale", 1.0), dtype=np.float64))
        if scale.size and float(scale.max()) <= _PIXEL_SCALE:
            return InputHint(0.0, 255.0, False, f"Rescaling {layer.name!r}: pixels")
        return None
    if class_name == "Normalization" and not getattr(layer, "invert", False):
        mean, variance = getattr(layer, "mean", None), getattr(layer, "variance", None)
        if mean is None or variance is None:
            return None
        try:
            centre = _as_sample(mean, spec)
            spread = 2.0 * np.sqrt(np.maximum(_as_sample(variance, spec), 0.0))
        except ValueError:
            return None
        return InputHint(
            centre - spread, centre + spread, False, f"Normalization {layer.name!r}: mean ± 2 sd"
        )
    return None


def input_hints(trace: Any, specs: list[TensorSpec]) -> dict[str, InputHint]:
    """Ranges for the inputs read directly by an Embedding, Rescaling or Normalization layer
    (from a :class:`portanet.export.convert.layertrace.LayerTrace`); Embedding wins over the
    others."""
    by_name = {s.name: s for s in specs}
    hints: dict[str, InputHint] = {}
    for call in trace.calls if trace is not None else []:
        if call.container:
            continue
        for tensor in call.inputs[:1]:
            name = source_input(tensor)
            spec = by_name.get(name or "")
            if spec is None or name is None:
                continue
            hint = _hint_for(call.layer, call.class_name, spec)
            if name is not None and hint is not None and (name not in hints or hint.integer):
                hints[name] = hint
    return hints


def integer_inputs(specs: list[TensorSpec], hints: dict[str, InputHint]) -> frozenset[str]:
    """Inputs holding whole numbers (token ids, category indices, integer dtypes): the noise
    floor never nudges them, since one ulp can cross from one id to the next."""
    return frozenset(
        s.name
        for s in specs
        if s.numpy_dtype.kind in "iub" or (s.name in hints and hints[s.name].integer)
    )
