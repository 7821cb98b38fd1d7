"""The noise floor: how far the Keras reference moves under perturbations that are not errors.

float32 arithmetic rounds, and some models amplify rounding: a deep random-weight network, or a
recurrent network run over long unscaled sequences, can move its output by more than any useful
tolerance when an input changes by one unit in the last place. An ONNX model that differs from
Keras by that much is not wrong; one that differs by far more is. So every gate measures, per
output element, how far Keras moves from its own float32 answer when

* the inputs are nudged by one float32 ulp (two runs, each element up or down at random) —
  always, for float inputs; never for inputs holding whole numbers (token ids, category
  indices, integer dtypes): one ulp below id 5 is id 4, a different token, not noise;
* the model is recomputed in float64 (the same configuration and weights, every dtype policy
  float64) — when asked (the gate asks when a strict comparison failed), for models whose
  configuration Keras can rebuild. What could not be measured is said, with the reason.

The noise at an element is the largest of those moves. Two nudged runs are a small sample: where
an error is not explained by them, the gate nudges those rows again (:func:`refine`). Export
side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from portanet.errors import first_line
from portanet.export.verify.compare import NOISE_FACTOR

ULP = "inputs nudged by one float32 ulp"
FLOAT64 = "reference recomputed in float64"
#: Runs with nudged inputs (each with its own random directions).
ULP_RUNS = 2
#: Further runs on the rows whose errors the first runs did not explain.
REFINE_RUNS = 16
#: At most this many rows are refined.
REFINE_ROWS = 256

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class NoiseFloor:
    """Per output, the largest move of the reference at every element, and how it was measured."""

    per_output: dict[str, np.ndarray]
    #: Method → largest move it caused over every output.
    methods: dict[str, float] = field(default_factory=dict)
    #: Method → why it could not be used.
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Rows measured :data:`REFINE_RUNS` more times (see :func:`refine`).
    refined_rows: int = 0
    #: The float64 copy of the model, once built (for the layerwise comparison's noise).
    model64: Any = field(default=None, repr=False)
    #: Inputs never nudged: they hold whole numbers (ids, categories).
    fixed: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the parity report's ``noise``)."""
        return {
            "methods": dict(self.methods),
            "unavailable": dict(self.unavailable),
            "factor": NOISE_FACTOR,
            "ulp_runs": ULP_RUNS,
            "refined_rows": self.refined_rows,
            "refine_runs": REFINE_RUNS,
            "not_nudged": sorted(self.fixed),
        }

    def describe(self) -> str:
        """One line: what the floor is made of."""
        parts = [f"{m} (max {v:.3g})" for m, v in self.methods.items()]
        missing = [f"{m}: not measured, {why}" for m, why in self.unavailable.items()]
        return "; ".join(parts + missing) or "not measured"


def nudge(
    feeds: dict[str, np.ndarray],
    rng: np.random.Generator,
    fixed: frozenset[str] | set[str] = frozenset(),
) -> dict[str, np.ndarray]:
    """``feeds`` with every float element moved one ulp up or down (at random); other dtypes
    and the inputs named in ``fixed`` (whole numbers: ids, categories) unchanged."""
    nudged = {}
    for name, array in feeds.items():
        if array.dtype.kind == "f" and name not in fixed:
            towards = np.where(rng.random(array.shape) < 0.5, -np.inf, np.inf).astype(array.dtype)
            nudged[name] = np.nextafter(array, towards).astype(array.dtype)
        else:
            nudged[name] = array
    return nudged


def nudgeable(feeds: dict[str, np.ndarray], fixed: frozenset[str] | set[str]) -> bool:
    """True when some input of ``feeds`` is nudged: a float input not in ``fixed``."""
    return any(a.dtype.kind == "f" and n not in fixed for n, a in feeds.items())


def measure(
    run: Runner,
    feeds: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    *,
    model: Any = None,
    float64: bool = False,
    seed: int = 0,
    fixed: frozenset[str] | set[str] = frozenset(),
) -> NoiseFloor:
    """Measure the noise floor of ``run`` (the Keras runner) around ``reference`` (its outputs
    for ``feeds``); with ``float64`` also recompute ``model`` in float64. Inputs in ``fixed``
    (whole numbers: token ids, category indices) are never nudged."""
    floor = NoiseFloor(
        {name: np.zeros(np.shape(value), dtype=np.float64) for name, value in reference.items()},
        fixed=frozenset(fixed),
    )
    if nudgeable(feeds, floor.fixed):
        rng = np.random.default_rng(seed + 7919)
        worst = 0.0
        for _ in range(ULP_RUNS):
            worst = max(worst, _accumulate(floor, reference, run(nudge(feeds, rng, floor.fixed))))
        floor.methods[ULP] = worst
    else:
        floor.unavailable[ULP] = (
            "the inputs hold whole numbers (ids, categories), which are never nudged"
        )
    if float64:
        add_float64(floor, model, feeds, reference)
    return floor


def refine(
    floor: NoiseFloor,
    run: Runner,
    feeds: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    rows: list[int],
    seed: int = 0,
) -> None:
    """Measure the noise again, :data:`REFINE_RUNS` times, on ``rows`` only: a few samples can
    miss how far a sensitive row moves; a row that does not move stays put however often it
    is nudged, so a conversion fault is never explained away by this."""
    if not rows or not nudgeable(feeds, floor.fixed):
        return
    chosen = np.asarray(rows[:REFINE_ROWS])
    subset = {n: a[chosen] for n, a in feeds.items()}
    rng = np.random.default_rng(seed + 15485863)
    worst = floor.methods.get(ULP, 0.0)
    for _ in range(REFINE_RUNS):
        moved = run(nudge(subset, rng, floor.fixed))
        for name, ref in reference.items():
            delta = np.abs(
                np.asarray(moved[name], np.float64) - np.asarray(ref, np.float64)[chosen]
            )
            delta = np.nan_to_num(delta, nan=0.0, posinf=np.inf)
            floor.per_output[name][chosen] = np.maximum(floor.per_output[name][chosen], delta)
            if delta.size:
                worst = max(worst, float(delta.max()))
    floor.methods[ULP] = worst
    floor.refined_rows = len(chosen)


def add_float64(
    floor: NoiseFloor, model: Any, feeds: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> None:
    """Add ``model`` recomputed in float64 to ``floor`` (or say why it could not be)."""
    from portanet.export.verify.runners import KerasRunner

    try:
        wide = float64_model(model)
        cast = {n: a.astype(np.float64) if a.dtype.kind == "f" else a for n, a in feeds.items()}
        outputs = KerasRunner(wide).run(cast)
        if any(np.shape(outputs[n]) != np.shape(reference[n]) for n in reference):
            raise ValueError("its outputs have other shapes")
        floor.methods[FLOAT64] = _accumulate(floor, reference, outputs)
        floor.model64 = wide
    except Exception as exc:  # Keras raises many types for configurations it cannot rebuild
        floor.unavailable[FLOAT64] = (
            f"the model cannot be rebuilt in float64 ({first_line(exc, 120)})"
        )


def _accumulate(
    floor: NoiseFloor, reference: dict[str, np.ndarray], moved: dict[str, np.ndarray]
) -> float:
    worst = 0.0
    for name, ref in reference.items():
        delta = np.abs(np.asarray(moved[name], dtype=np.float64) - np.asarray(ref, np.float64))
        delta = np.nan_to_num(delta, nan=0.0, posinf=np.inf)
        np.maximum(floor.per_output[name], delta, out=floor.per_output[name])
        if delta.size:
            worst = max(worst, float(delta.max()))
    return worst


def _as_float64(node: Any) -> Any:
    """A configuration with every float dtype (policy) made float64."""
    if isinstance(node, list):
        return [_as_float64(item) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if (
            key == "dtype"
            and isinstance(value, str)
            and value.startswith(("float", "mixed_", "bfloat"))
        ):
            result[key] = "float64"
        elif (
            key == "config"
            and node.get("class_name") in ("DTypePolicy", "Policy", "FloatDTypePolicy")
            and isinstance(value, dict)
        ):
            result[key] = {**value, "name": "float64"}
        else:
            result[key] = _as_float64(value)
    return result


def float64_model(model: Any) -> Any:
    """The same model (configuration and weights) with every layer computing in float64."""
    if model is None or not hasattr(model, "get_config") or not getattr(model, "layers", None):
        raise ValueError("a SavedModel signature has no Keras configuration")
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras as lib

        custom: dict[str, Any] = {}
    else:
        import keras as lib

        from portanet.export.keras.repair import application_layers

        custom = application_layers()
    config = _as_float64(model.get_config())
    with lib.utils.custom_object_scope(custom):
        wide = type(model).from_config(config)
    wide.set_weights(
        [w.astype(np.float64) if w.dtype.kind == "f" else w for w in model.get_weights()]
    )
    return wide
