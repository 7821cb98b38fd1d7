"""Rows for ``optimize`` and ``bench``: read ``--data``, split it, or draw inputs (numpy only).

``--data`` is what ``portanet export --data`` takes: NPY/NPZ arrays in the Keras model's layout
(channels-last images), or a table (CSV, Parquet, JSONL, JSON) for a model with one 2-D input.
Arrays come back in the layout the ONNX graph takes (channels-first where it was exported so).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.runtime import Model
from portanet.schema import ModelSchema, TensorSpec

Feeds = dict[str, np.ndarray]
#: ``ModelSchema.extra`` key naming inputs the ONNX graph takes channels-first (set by export).
NCHW_KEY = "nchw_inputs"


def nchw_names(schema: ModelSchema) -> set[str]:
    """Inputs the ONNX graph takes channels-first while Keras takes them channels-last."""
    return set(schema.extra.get(NCHW_KEY, []) if schema.extra else [])


def keras_layout(spec: TensorSpec, schema: ModelSchema) -> tuple[int | str | None, ...]:
    """The shape of ``spec`` as the Keras model takes it (channels-last)."""
    if spec.name in nchw_names(schema) and spec.rank == 4:
        return (spec.shape[0], spec.shape[2], spec.shape[3], spec.shape[1])
    return spec.shape


def to_onnx_layout(feeds: Feeds, schema: ModelSchema) -> Feeds:
    """Keras-layout arrays as the ONNX graph takes them."""
    nchw = nchw_names(schema)
    return {
        k: np.ascontiguousarray(v.transpose(0, 3, 1, 2)) if k in nchw and v.ndim == 4 else v
        for k, v in feeds.items()
    }


def to_keras_layout(feeds: Feeds, schema: ModelSchema) -> Feeds:
    """ONNX-layout arrays as the Keras model takes them."""
    nchw = nchw_names(schema)
    return {
        k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) if k in nchw and v.ndim == 4 else v
        for k, v in feeds.items()
    }


def rows_of(feeds: Feeds) -> int:
    """Rows (batch size) of a feeds dict."""
    return int(len(next(iter(feeds.values())))) if feeds else 0


def take(feeds: Feeds, index: np.ndarray | slice) -> Feeds:
    """The rows ``index`` of every input (contiguous copies)."""
    return {k: np.ascontiguousarray(v[index]) for k, v in feeds.items()}


def load_rows(path: str | os.PathLike[str], model: Model) -> Feeds:
    """The rows of ``path`` for ``model``'s inputs, checked against its shapes, in the layout
    the ONNX graph takes."""
    source = Path(path)
    schema = model.schema
    if not source.exists():
        raise InputError(f"{source}: no such file (expected rows for {model.input_names})")
    suffix = source.suffix.lower()
    if suffix == ".npz":
        with np.load(source, allow_pickle=False) as archive:
            if len(schema.inputs) == 1 and len(archive.files) == 1:
                arrays = {schema.inputs[0].name: archive[archive.files[0]]}
            else:
                missing = [s.name for s in schema.inputs if s.name not in archive.files]
                if missing:
                    raise InputError(
                        f"{source}: expected arrays named {model.input_names}, got "
                        f"{archive.files} (missing {missing})"
                    )
                arrays = {s.name: archive[s.name] for s in schema.inputs}
    elif suffix == ".npy":
        if len(schema.inputs) != 1:
            raise InputError(
                f"{source}: a model with inputs {model.input_names} needs an .npz "
                f"holding one array per input name, got one .npy array"
            )
        arrays = {schema.inputs[0].name: np.load(source, allow_pickle=False)}
    else:
        spec = schema.inputs[0]
        if len(schema.inputs) != 1 or spec.rank != 2 or not isinstance(spec.shape[1], int):
            raise InputError(
                f"{source}: a table fits only a model with one 2-D input, got "
                f"inputs {[(s.name, s.shape) for s in schema.inputs]}; give "
                f"an .npy or .npz array instead"
            )
        from portanet.tables import Columns, read_all

        batch = read_all(source, Columns(model.feature_names, spec.shape[1], (), spec.numpy_dtype))
        arrays = {spec.name: batch.features}
    checked = {
        s.name: _fitted(source, s, keras_layout(s, schema), arrays[s.name]) for s in schema.inputs
    }
    sizes = {len(a) for a in checked.values()}
    if len(sizes) != 1:
        raise InputError(f"{source}: expected one row count for all inputs, got {sorted(sizes)}")
    return to_onnx_layout(checked, schema)


def _fitted(path: Path, spec: TensorSpec, shape: tuple, array: np.ndarray) -> np.ndarray:
    fits = array.ndim == len(shape) and all(
        not isinstance(want, int) or want == got
        for want, got in zip(shape[1:], array.shape[1:], strict=False)
    )
    if not fits or not len(array):
        raise InputError(
            f"{path}: input {spec.name!r} expects rows of shape "
            f"({', '.join(str(d) for d in shape[1:])}) in the Keras model's layout, "
            f"got an array of shape {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: input {spec.name!r} expects numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array.astype(spec.numpy_dtype, copy=False))


def split_rows(feeds: Feeds, calibration: int, seed: int = 0) -> tuple[Feeds, Feeds]:
    """A seeded split into calibration rows and the held-out rows every candidate is measured
    on; at least as many rows are held out as used for calibration when there are few."""
    first, held = _shuffled(
        feeds, calibration, seed, 4, "some to calibrate, the rest to measure on"
    )
    return take(feeds, first), take(feeds, np.sort(held))


def _shuffled(
    feeds: Feeds, calibration: int, seed: int, minimum: int, purpose: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded calibration row indices (sorted; at most half the rows) and the other rows'
    indices in shuffled order; at least ``minimum`` rows are required (``purpose`` says why)."""
    rows = rows_of(feeds)
    if rows < minimum:
        raise InputError(f"--data: expected at least {minimum} rows ({purpose}), got {rows}")
    count = min(calibration, rows // 2)
    order = np.random.default_rng(seed).permutation(rows)
    return np.sort(order[:count]), order[count:]


def split_three(feeds: Feeds, calibration: int, seed: int = 0) -> tuple[Feeds, Feeds, Feeds]:
    """A seeded split into three disjoint sets: calibration rows (as :func:`split_rows`), the
    selection rows the int8 search judges its recipes and float nodes on, and the final rows
    every candidate is measured on (the other half of the held-out rows). The search chooses on
    rows the verdict never sees, so its choice cannot fit the rows it is judged by."""
    first, held = _shuffled(
        feeds, calibration, seed, 6, "to calibrate, to select the int8 recipe on and to measure on"
    )
    half = len(held) // 2
    return (
        take(feeds, first),
        take(feeds, np.sort(held[:half])),
        take(feeds, np.sort(held[half:])),
    )


def random_feeds(model: Model, rows: int, seed: int = 0) -> Feeds:
    """Seeded inputs shaped for ``model`` (dynamic dimensions taken as 1 beyond the batch):
    uniform in [0, 1) for float inputs, zeros for integer ones (ids stay in any vocabulary)."""
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for spec in model.schema.inputs:
        shape = (rows, *[d if isinstance(d, int) else 1 for d in spec.shape[1:]])
        if spec.numpy_dtype.kind == "f":
            feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.numpy_dtype)
        elif spec.numpy_dtype.kind in "biu":
            feeds[spec.name] = np.zeros(shape, dtype=spec.numpy_dtype)
        else:
            raise InputError(
                f"input {spec.name!r}: expected a numeric input to draw rows for, "
                f"got dtype {spec.dtype}; pass rows instead"
            )
    return feeds


def fixed_batch(model: Model) -> int | None:
    """The batch size the graph is fixed to, or ``None`` when the batch is dynamic."""
    first = model.schema.inputs[0].shape[0] if model.schema.inputs else None
    return first if isinstance(first, int) else None
