"""Random gate inputs that respect the model: what value range each input expects.

The first layers that read a model input say what it holds: an ``Embedding`` takes integer ids
below its vocabulary size; a ``Rescaling`` by 1/255 or 1/127.5 takes pixels in [0, 255]; an
adapted ``Normalization`` takes values around its mean (mean ± 2 standard deviations). Inputs
with none of these get [-1, 1] for images (rank 4, what most image networks are trained on),
[0, 10) for integers and a standard normal otherwise. Export side (reads the layer trace).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from portanet.spec import TensorSpec

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


def _source_input(tensor: Any) -> str | None:
    """The name of the placeholder (model input) a tensor is a pass-through copy of."""
    op = getattr(tensor, "op", None)
    for _ in range(8):
        if op is None:
            return None
        if op.type == "Placeholder":
            return op.name
        if op.type not in _PASS_THROUGH or not op.inputs:
            return None
        op = op.inputs[0].op
    return None


def _as_sample(value: Any, spec: TensorSpec) -> np.ndarray:
    sample = tuple(d if isinstance(d, int) else 1 for d in spec.shape[1:])
    array = np.asarray(value, dtype=np.float64)
    return np.broadcast_to(array, (1, *sample))[0] if array.ndim > len(sample) else \
        np.broadcast_to(array, sample)


def _hint_for(layer: Any, class_name: str, spec: TensorSpec) -> InputHint | None:
    if class_name == "Embedding" and getattr(layer, "input_dim", None):
        return InputHint(0, int(layer.input_dim), True, f"Embedding {layer.name!r} vocabulary")
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
        return InputHint(centre - spread, centre + spread, False,
                         f"Normalization {layer.name!r}: mean ± 2 sd")
    return None


def input_hints(trace: Any, specs: list[TensorSpec]) -> dict[str, InputHint]:
    """Ranges for the inputs read directly by an Embedding, Rescaling or Normalization layer
    (from a :class:`portanet.layertrace.LayerTrace`); Embedding wins over the others."""
    by_name = {s.name: s for s in specs}
    hints: dict[str, InputHint] = {}
    for call in trace.calls if trace is not None else []:
        if call.container:
            continue
        for tensor in call.inputs[:1]:
            name = _source_input(tensor)
            spec = by_name.get(name or "")
            if spec is None:
                continue
            hint = _hint_for(call.layer, call.class_name, spec)
            if hint is not None and (name not in hints or hint.integer):
                hints[name] = hint
    return hints


def random_array(spec: TensorSpec, rows: int, rng: np.random.Generator, low: Any = None,
                 high: Any = None, hint: InputHint | None = None) -> np.ndarray:
    """Seeded random values for ``spec``: inside ``[low, high]`` when given (the data's range),
    else inside the hint's range, else the defaults described in the module docstring."""
    shape = (rows, *[d if isinstance(d, int) else 8 for d in spec.shape[1:]])
    dtype = spec.numpy_dtype
    if dtype.kind in "iub":
        if hint is not None and hint.integer:
            return rng.integers(hint.low, hint.high, size=shape).astype(dtype)
        if low is not None and high is not None:
            return rng.integers(np.floor(low), np.floor(high) + 1, size=shape).astype(dtype)
        return rng.integers(0, 10, size=shape).astype(dtype)
    if low is not None and high is not None:
        return rng.uniform(low, high, size=shape).astype(dtype)
    if hint is not None:
        if hint.integer:
            return rng.integers(hint.low, hint.high, size=shape).astype(dtype)
        return rng.uniform(hint.low, hint.high, size=shape).astype(dtype)
    if spec.rank == 4:  # images: the [-1, 1] range most image models are trained on
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
