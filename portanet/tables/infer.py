"""Batch inference over files: stream rows in, predictions out (runtime side, no TensorFlow)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portanet.errors import InputError
from portanet.tables.pipeline import prefetch
from portanet.tables.readers import iter_batches
from portanet.tables.types import DEFAULT_BATCH_ROWS, Columns
from portanet.tables.writers import open_writer, output_format
from portanet.runtime import Model, load
from portanet.runtime.model import as_matrix
from portanet.schema import BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER


@dataclass
class InferResult:
    """What a batch inference run did."""

    rows: int
    seconds: float
    output: Path | None


def prediction_columns(model: Model, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output columns for a batch: ``probability`` + ``label`` for binary classifiers,
    ``probability_<class>`` + ``label`` for multiclass, else one column per output value."""
    schema = model.schema
    columns: dict[str, np.ndarray] = {}
    if schema.task in (BINARY_CLASSIFIER, MULTICLASS_CLASSIFIER) and len(outputs) == 1:
        scores = next(iter(outputs.values()))
        flat = as_matrix(scores)
        if schema.task == BINARY_CLASSIFIER:
            columns["probability"] = flat[:, 0]
        else:
            names = schema.labels or tuple(str(i) for i in range(flat.shape[1]))
            for index, label in enumerate(names[: flat.shape[1]]):
                columns[f"probability_{label}"] = flat[:, index]
        columns["label"] = model.labels_for(scores)
        return columns
    for name, values in outputs.items():
        flat = as_matrix(values)
        if flat.shape[1] == 1:
            columns[name] = flat[:, 0]
        else:
            for index in range(flat.shape[1]):
                columns[f"{name}_{index}"] = flat[:, index]
    return columns


def infer_file(model: Model | str | os.PathLike[str], source: str | os.PathLike[str],
               output: str | os.PathLike[str] | None = None, *,
               batch_size: int = DEFAULT_BATCH_ROWS, keep_columns: Sequence[str] = (),
               allow_nan: bool = False, stdin_format: str = "csv",
               on_batch: Callable[[int], None] | None = None) -> InferResult:
    """Predict every row of ``source`` and write the predictions to ``output`` (stdout if None).

    Rows stream through in batches of ``batch_size``, so memory stays flat. The output file is
    written atomically: a bad value anywhere leaves no partial file. ``on_batch`` receives the
    row count of each finished batch (for progress bars).
    """
    started = time.perf_counter()
    runtime = model if isinstance(model, Model) else load(model)
    if output_format(output) == "npy" and keep_columns:  # checked before reading anything
        raise InputError(f"{output}: .npy holds numbers only; kept columns need "
                         f"a .csv, .parquet or .jsonl output")
    specs = runtime.schema.inputs
    if len(specs) != 1 or specs[0].rank != 2 or not isinstance(specs[0].shape[1], int):
        raise InputError(f"{runtime.path}: file inference expects one 2-D input of fixed width, "
                         f"got inputs {[(s.name, s.shape) for s in specs]}; use the library "
                         f"(portanet.load(...).predict) for other models")
    spec = specs[0]
    columns = Columns(runtime.feature_names, int(spec.shape[1]), tuple(keep_columns),
                      spec.numpy_dtype)
    rows = 0
    with open_writer(output) as writer:
        for batch in prefetch(iter_batches(source, columns, batch_rows=batch_size,
                                           allow_nan=allow_nan, stdin_format=stdin_format)):
            # The reader has refused NaN/Inf already (naming line and column); skip a recheck.
            outputs = runtime.run({spec.name: batch.features}, allow_nan=True)
            table = dict(batch.kept)
            table.update(prediction_columns(runtime, outputs))
            writer.write(table)
            rows += len(batch.features)
            if on_batch is not None:
                on_batch(len(batch.features))
        if rows == 0:  # header only: an empty result with the right columns
            empty = runtime.run({spec.name: np.empty((0, columns.width), spec.numpy_dtype)})
            table = {k: np.array([], dtype=object) for k in keep_columns}
            table.update(prediction_columns(runtime, empty))
            writer.write(table)
    return InferResult(rows, time.perf_counter() - started,
                       Path(output) if output and str(output) != "-" else None)
