"""The gate's inputs: the rows the caller gives, and random batches that respect the model —
what value range each input expects. The gate knows no dataset: a caller with real rows (the
reference trainer, a user's ``--data``) passes them.

The first layers that read a model input say what it holds: an ``Embedding`` takes integer ids
below its vocabulary size; a ``Rescaling`` by 1/255 or 1/127.5 takes pixels in [0, 255]; an
adapted ``Normalization`` takes values around its mean (mean ± 2 standard deviations). Inputs
with none of these get [-1, 1] for images (rank 4, what most image networks are trained on),
[0, 10) for integers and a standard normal otherwise. Export side (reads the layer trace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError, first_line
from portanet.export.verify.data import check_whole, read_data
from portanet.export.verify.hints import InputHint, integer_inputs
from portanet.export.verify.runners import fixed_batch, keras_specs
from portanet.schema import ModelSchema, TensorSpec

#: Batch sizes of the random inputs (the last one at most); 1 proves the dynamic batch dimension.
RANDOM_BATCHES = (1, 7, 1024)
#: The largest random batch holds at most this many bytes of input (but at least
#: :data:`MIN_LARGE_BATCH` rows): a 380×380×3 image model gets 8 rows, not 1,024 (1.8 GB), and
#: so does a 224×224×3 one — three batch sizes prove the dynamic batch; more rows of images cost
#: gate time (every row runs through Keras three times: reference and two noise-floor runs).
GATE_BATCH_BYTES = 4 << 20
MIN_LARGE_BATCH = 8
#: Sizes tried for an image input's unknown height and width (square), smallest first;
#: :data:`COMMON_SIZE` is used when Keras runs it, else the smallest size Keras runs.
PROBE_SIZES = (8, 16, 32, 48, 64, 96, 128, 160, 192, 224)
COMMON_SIZE = 224
#: Size of any other unknown dimension (a sequence's length).
DEFAULT_DYNAMIC = 8


def random_array(
    spec: TensorSpec,
    rows: int,
    rng: np.random.Generator,
    low: Any = None,
    high: Any = None,
    hint: InputHint | None = None,
    sample: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Seeded random values for ``spec`` (each sample shaped ``sample`` when the input has
    unknown dimensions, see :func:`sample_shape`): whole ids inside the vocabulary for an input
    read as integers (the hint says so), else inside ``[low, high]`` when given (the data's
    range), else inside the hint's range, else the defaults described in the module docstring."""
    shape = (rows, *sample_shape(spec, sample))
    dtype = spec.numpy_dtype
    if hint is not None and hint.integer:
        return rng.integers(hint.low, hint.high, size=shape).astype(dtype)
    if dtype.kind in "iub":
        if low is not None and high is not None:
            return rng.integers(np.floor(low), np.floor(high) + 1, size=shape).astype(dtype)
        return rng.integers(0, 10, size=shape).astype(dtype)
    if low is not None and high is not None:
        return rng.uniform(low, high, size=shape).astype(dtype)
    if hint is not None:
        return rng.uniform(hint.low, hint.high, size=shape).astype(dtype)
    if spec.rank == 4:  # images: the [-1, 1] range most image models are trained on
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def sample_shape(spec: TensorSpec, chosen: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """One sample's shape: ``chosen`` when given (sizes probed by :func:`dynamic_shapes`), else
    the input's own dimensions with :data:`DEFAULT_DYNAMIC` for unknown ones."""
    if chosen is not None:
        return tuple(chosen)
    return tuple(d if isinstance(d, int) else DEFAULT_DYNAMIC for d in spec.shape[1:])


def _spatial(spec: TensorSpec) -> bool:
    """An image input (rank 4, channels-last) whose height or width is unknown."""
    return spec.rank == 4 and not all(isinstance(d, int) for d in spec.shape[1:3])


def _at_size(spec: TensorSpec, size: int) -> tuple[int, ...]:
    dims = [d if isinstance(d, int) else size for d in spec.shape[1:3]]
    channel = spec.shape[3] if isinstance(spec.shape[3], int) else 3
    return (dims[0], dims[1], channel)


@dataclass(frozen=True)
class ProbedSizes:
    """What probing an image input of unknown height and width found: the sample shapes the
    gate runs (``shapes``), the smaller sizes the gate checks too (``smaller``: Keras' smallest
    size and the probe sizes above it, below the one used) and the sentence that says so."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    smaller: tuple[int, ...] = ()
    said: str = ""


def dynamic_shapes(specs: list[TensorSpec], probe: Any, hints: dict[str, InputHint]) -> ProbedSizes:
    """Sample shapes for image inputs with unknown height/width that Keras can run, and a
    sentence saying which sizes were tried and used.

    ``probe(feeds)`` runs Keras on one row; each size of :data:`PROBE_SIZES` is tried until
    one runs (the architecture's minimum among them); :data:`COMMON_SIZE` is used when Keras
    runs it — and the sizes from the minimum up are checked too, on small batches of their own
    (:class:`SmallerSizes`) — else that minimum.
    A size Keras cannot run is Keras' limit, never blamed on the ONNX graph: with none, an
    :class:`InputError` names the sizes and Keras' message."""
    dynamic = [s for s in specs if _spatial(s)]
    if not dynamic or probe is None:
        return ProbedSizes()
    rng = np.random.default_rng(0)
    failures: dict[int, str] = {}

    def runs(size: int) -> bool:
        feeds = {
            s.name: random_array(
                s, 1, rng, hint=hints.get(s.name), sample=_at_size(s, size) if _spatial(s) else None
            )
            for s in specs
        }
        try:
            outputs = probe(feeds)
        except Exception as exc:  # Keras raises many types for shapes it cannot run
            failures[size] = first_line(exc, 160)
            return False
        empty = [n for n, v in outputs.items() if not np.isfinite(np.asarray(v, float)).any()]
        if empty:  # shrunk to nothing (empty, or a mean over nothing): nothing to compare
            failures[size] = f"outputs {empty} are empty or NaN at this size"
        return not empty

    minimum = next((size for size in PROBE_SIZES if runs(size)), None)
    if minimum is None:
        raise InputError(
            f"inputs {[s.name for s in dynamic]} have unknown height and width, and Keras "
            f"itself cannot run the model at any of the sizes {list(PROBE_SIZES)} (at "
            f"{PROBE_SIZES[-1]}: {failures.get(PROBE_SIZES[-1], '')}); give --data with "
            f"images at a size the model accepts"
        )
    used = COMMON_SIZE if minimum == COMMON_SIZE or runs(COMMON_SIZE) else minimum
    shapes = {s.name: _at_size(s, used) for s in dynamic}
    failed = sorted(size for size in failures if size < minimum)
    said = (
        f"unknown image sizes: Keras runs {minimum}×{minimum} and up"
        + (f" (not {', '.join(map(str, failed))})" if failed else "")
        + f", gate used {used}×{used} for "
        + ", ".join(repr(s.name) for s in dynamic)
    )
    smaller = tuple(size for size in PROBE_SIZES if minimum <= size < used)
    return ProbedSizes(shapes, smaller, said)


def batch_sizes(row_bytes: int, fixed: int | None) -> tuple[int, ...]:
    """Random batch sizes: 1, 7 and as many rows as :data:`GATE_BATCH_BYTES` of input hold
    (between :data:`MIN_LARGE_BATCH` and the last of :data:`RANDOM_BATCHES`); for a graph
    with a fixed batch, batches of that size covering as many rows (at least two)."""
    large = min(RANDOM_BATCHES[-1], max(MIN_LARGE_BATCH, GATE_BATCH_BYTES // max(row_bytes, 1)))
    usual = (*RANDOM_BATCHES[:-1], large)
    return (fixed,) * max(2, -(-sum(usual) // fixed)) if fixed else usual


@dataclass
class GateInputs:
    """Feeds for the gate (one dict input name → array covering all samples) and their origin:
    ``batches`` lists the consecutive parts as (label, first row, rows); ``synthetic`` is True
    when none of them are real rows."""

    feeds: dict[str, np.ndarray]
    description: str
    batches: list[tuple[str, int, int]] = field(default_factory=list)
    synthetic: bool = False
    #: Inputs holding whole numbers (ids, categories): never nudged (see :func:`integer_inputs`).
    integer: frozenset[str] = frozenset()
    #: Inputs at smaller sizes (an image input of unknown size whose gate ran at
    #: :data:`COMMON_SIZE`), compared by the gate on their own; else None.
    smaller: SmallerSizes | None = None


def _bounds(
    real: np.ndarray, spec: TensorSpec, chosen: tuple[int, ...] | None = None
) -> tuple[Any, Any]:
    """The data's observed range for random rows of ``spec``: per position when the real rows
    have the random rows' sample shape (any rank), else over all values; ``None`` without
    finite values."""
    values = real.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not len(values) or not finite.any():
        return None, None
    sample = sample_shape(spec, chosen)
    if values.shape[1:] == sample and finite.all(axis=0).all():
        return values.min(axis=0), values.max(axis=0)
    return float(values[finite].min()), float(values[finite].max())


def gate_inputs(
    schema: ModelSchema,
    *,
    data: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batches: tuple[int, ...] | None = None,
    hints: dict[str, InputHint] | None = None,
    probe: Any = None,
) -> GateInputs:
    """The inputs the gate runs, in the Keras model's layout: ``data`` rows when given, plus
    seeded random batches (sizes
    ``batches``; as many rows in batches of the fixed size of a graph that has one) shaped for
    the model, drawn inside the data's per-column range when there is data, else inside the
    ``hints`` ranges (Embedding vocabularies, pixel ranges; see above).

    Random batches are sized by bytes (:func:`batch_sizes`). An image input with unknown
    height and width gets the size of the ``data`` arrays, else a size Keras runs, found by
    ``probe`` (Keras on one row: :func:`dynamic_shapes`); the description says which."""
    specs = keras_specs(schema)
    hints = dict(hints or {})
    for name, size in schema.vocabulary.items():  # the vocabulary recorded at export
        if name in {s.name for s in specs} and not (name in hints and hints[name].integer):
            hints[name] = InputHint(0, int(size), True, f"vocabulary of {name!r} recorded")
    integer = integer_inputs(specs, hints)
    rng = np.random.default_rng(seed)
    real: dict[str, np.ndarray] | None = None
    described: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    probed = ProbedSizes()
    if data is not None:
        real = read_data(Path(data), schema, specs)
        for name in integer:
            hint = hints.get(name)
            ids = (hint.low, hint.high, hint.reason) if hint is not None and hint.integer else None
            check_whole(Path(data), name, real[name], ids)
        described.append(f"{len(next(iter(real.values())))} rows of {Path(data).name}")
        shapes = {
            s.name: tuple(real[s.name].shape[1:])
            for s in specs
            if not all(isinstance(d, int) for d in s.shape[1:])
        }
    else:
        probed = dynamic_shapes(specs, probe, hints)
        shapes = probed.shapes
        if probed.said:
            described.append(probed.said)
    if batches is None:
        row_bytes = sum(
            int(np.prod(sample_shape(s, shapes.get(s.name)))) * s.numpy_dtype.itemsize
            for s in specs
        )
        batches = batch_sizes(row_bytes, fixed_batch(schema))
    parts: list[dict[str, np.ndarray]] = [real] if real else []
    labels = [described[0]] if real else []
    bounds = {s.name: _bounds(real[s.name], s, shapes.get(s.name)) for s in specs} if real else {}
    for index, rows in enumerate(batches):
        batch = {}
        for spec in specs:
            low, high = bounds.get(spec.name, (None, None))
            batch[spec.name] = random_array(
                spec, rows, rng, low, high, hints.get(spec.name), shapes.get(spec.name)
            )
        parts.append(batch)
        labels.append(f"random batch {index + 1} of {rows} rows")
    sizes = (
        f"{len(batches)} random batches of {batches[0]}"
        if len(set(batches)) == 1 and len(batches) > 2
        else "random batches of " + ", ".join(map(str, batches))
    )
    described.append(f"{sizes} (seed {seed})")
    ranges = sorted({h.reason for n, h in hints.items() if real is None or n not in real})
    if real is not None:
        described.append("random rows inside the data's observed range")
    elif ranges:
        described.append("ranges from " + "; ".join(ranges))
    if real is None:
        described.insert(0, "synthetic")
        described.append("real rows as gate data give a stronger proof")
    feeds = {s.name: np.concatenate([p[s.name] for p in parts]) for s in specs}
    starts = np.cumsum([0] + [len(next(iter(p.values()))) for p in parts])
    spans = [
        (label, int(start), int(end - start))
        for label, start, end in zip(labels, starts[:-1], starts[1:], strict=False)
    ]
    smaller = None
    if real is None and probed.smaller:
        smaller = SmallerSizes(probed.smaller, specs, hints, integer, seed)
    return GateInputs(feeds, "; ".join(described), spans, real is None, integer, smaller)


#: Random batch sizes at each smaller image size (a second, cheaper check).
SMALLER_BATCHES = (1, 7)


@dataclass(frozen=True)
class SmallerSizes:
    """Image sizes Keras runs below the one the gate used (smallest first: the architecture's
    minimum, then the probe sizes above it), and the gate inputs at each (:meth:`at`)."""

    sizes: tuple[int, ...]
    specs: list[TensorSpec]
    hints: dict[str, InputHint]
    integer: frozenset[str]
    seed: int

    def at(self, size: int) -> GateInputs:
        """Seeded random batches of :data:`SMALLER_BATCHES` rows at ``size``×``size``."""
        rng = np.random.default_rng(self.seed + size)
        parts = [
            {
                s.name: random_array(
                    s,
                    rows,
                    rng,
                    hint=self.hints.get(s.name),
                    sample=_at_size(s, size) if _spatial(s) else None,
                )
                for s in self.specs
            }
            for rows in SMALLER_BATCHES
        ]
        feeds = {s.name: np.concatenate([p[s.name] for p in parts]) for s in self.specs}
        starts = np.cumsum([0, *SMALLER_BATCHES])
        spans = [
            (f"random batch {i + 1} of {rows} rows at {size}×{size}", int(start), rows)
            for i, (rows, start) in enumerate(zip(SMALLER_BATCHES, starts, strict=False))
        ]
        batches = ", ".join(map(str, SMALLER_BATCHES))
        description = f"synthetic; at {size}×{size}: random batches of {batches} (seed {self.seed})"
        return GateInputs(feeds, description, spans, True, self.integer)
