"""The rows a caller gives the gate (``--data``): NPZ with one array per input, NPY, or a table
for a 2-D input, in the Keras model's layout, checked against the model's fixed dimensions and
its integer inputs. Export side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.schema import ModelSchema, TensorSpec
from portanet.tables import Columns, read_all


def check_whole(
    path: Path, name: str, array: np.ndarray, ids: tuple[int, int, str] | None = None
) -> None:
    """Refuse gate data for an integer input (ids, categories) that holds fractions, or ids
    outside ``ids`` = (low, high, why) when given, naming the file's row."""
    values = np.asarray(array, dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    what = "whole numbers"
    if ids is not None:
        low, high, why = ids
        bad |= (values < low) | (values >= high)
        what = f"whole ids in [{low}, {high}) ({why})"
    if bad.any():
        flat = bad.reshape(len(bad), -1) if bad.ndim > 1 else bad.reshape(-1, 1)
        row = int(np.flatnonzero(flat.any(axis=1))[0])
        value = values[row][bad[row]].reshape(-1)[0] if bad.ndim > 1 else values[row]
        raise InputError(f"{path}: input {name!r} expects {what}, got {value:g} in row {row}")


def read_data(path: Path, schema: ModelSchema, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Rows for the gate from ``path``: NPZ (one array per input name), NPY, or a table for a
    2-D input. Arrays are in the Keras model's layout and must fit its fixed dimensions."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if len(specs) == 1 and len(archive.files) == 1:
                arrays = {specs[0].name: archive[archive.files[0]]}
            else:
                missing = [s.name for s in specs if s.name not in archive.files]
                if missing:
                    raise InputError(
                        f"{path}: expected arrays named {[s.name for s in specs]}, "
                        f"got {archive.files} (missing {missing})"
                    )
                arrays = {s.name: archive[s.name] for s in specs}
        return {s.name: _fitted(path, s, arrays[s.name]) for s in specs}
    if len(specs) != 1:
        raise InputError(
            f"{path}: a model with inputs {[s.name for s in specs]} needs its gate data "
            f"as an .npz holding one array per input name"
        )
    spec = specs[0]
    # An integer input reads its NPY here too: whole numbers are checked, never truncated.
    if path.suffix.lower() == ".npy" and (spec.rank != 2 or spec.numpy_dtype.kind in "iub"):
        return {spec.name: _fitted(path, spec, np.load(path, allow_pickle=False))}
    if spec.rank != 2 or not isinstance(spec.shape[1], int):
        raise InputError(
            f"{path}: input {spec.name!r} has shape {spec.shape}; tabular gate data "
            f"fits only 2-D inputs, give an .npy or .npz array instead"
        )
    batch = read_all(path, Columns(schema.feature_names, spec.shape[1], (), spec.numpy_dtype))
    return {spec.name: batch.features}


def _fitted(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    fits = array.ndim == spec.rank and all(
        not isinstance(want, int) or want == got
        for want, got in zip(spec.shape[1:], array.shape[1:], strict=False)
    )
    if not fits or not len(array):
        raise InputError(
            f"{path}: input {spec.name!r} expects arrays of shape "
            f"(rows, {', '.join(str(d) for d in spec.shape[1:])}) in the Keras "
            f"model's layout, got {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: input {spec.name!r} expects numbers, got dtype {array.dtype}")
    if spec.numpy_dtype.kind in "iub":
        check_whole(path, spec.name, array)
    return array.astype(spec.numpy_dtype)
