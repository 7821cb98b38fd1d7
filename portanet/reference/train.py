"""Train the seed Pima network reproducibly, evaluate it and save it as HDF5 ``.h5``.

Export side: imports TensorFlow/Keras lazily. The saved file carries two extra HDF5 attributes,
``portanet_schema`` (feature names, task, threshold) and ``portanet_metrics`` (names in
:mod:`portanet.schema`), which the export copies into the ONNX metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from portanet._files import atomic_path
from portanet.errors import InputError
from portanet.reference.data import Dataset, load_pima, pima_csv_path, stratified_split
from portanet.schema import BINARY_CLASSIFIER, METRICS_ATTR, SCHEMA_ATTR

DEFAULT_OUTPUT = Path("models/pima_mlp.h5")

#: Called after every epoch with (epoch number from 1, epochs planned, Keras logs).
EpochCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What training produced: the file, the figures and how long it ran."""

    path: Path
    metrics: dict[str, dict[str, float]]
    epochs_run: int
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties)."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        stop = start
        while stop + 1 < len(scores) and sorted_scores[stop + 1] == sorted_scores[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def evaluate(model: Any, data: Dataset) -> dict[str, float]:
    """Accuracy, ROC AUC and binary cross-entropy loss of ``model`` on ``data``."""
    scores = np.asarray(model.predict(data.features, verbose=0)).ravel().astype(np.float64)
    labels = data.labels.astype(np.float64)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {
        "accuracy": float(np.mean((scores >= 0.5) == (labels == 1))),
        "roc_auc": roc_auc(labels, scores),
        "loss": float(loss),
        "rows": len(labels),
    }


def train_pima(
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    *,
    data: str | os.PathLike[str] | None = None,
    epochs: int = 200,
    seed: int = 7,
    batch_size: int = 16,
    patience: int = 25,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train the seed network on the Pima data and save it as ``.h5`` (atomically).

    Reproducible from ``seed``: the split, the weights' initialisation and the shuffling all
    derive from it, and TensorFlow runs with deterministic ops. Training stops early when the
    validation loss has not improved for ``patience`` epochs, keeping the best weights.
    """
    if epochs < 1:
        raise InputError(f"epochs: expected a positive number, got {epochs}")
    target = Path(output)
    if target.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"{target}: expected an .h5 output path, got suffix {target.suffix!r}")
    from portanet.export.keras.load import quiet_tensorflow

    tf = quiet_tensorflow()
    import keras

    from portanet.reference.model import build_pima_mlp

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    split = stratified_split(load_pima(None if data is None else Path(data)), seed=seed)
    model = build_pima_mlp(split.train.features, feature_names=split.train.feature_names)

    val_auc: list[float] = []  # per-epoch validation ROC AUC for the report's learning curves

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            val_auc.append(
                roc_auc(
                    split.validation.labels,
                    np.asarray(self.model(split.validation.features, training=False)),
                )
            )
            if on_epoch is not None:
                on_epoch(epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    history = model.fit(
        split.train.features,
        split.train.labels,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        validation_data=(split.validation.features, split.validation.labels),
        callbacks=[stop, _Progress()],
    )
    metrics = {"validation": evaluate(model, split.validation), "test": evaluate(model, split.test)}
    metrics["train"] = evaluate(model, split.train)
    schema = {
        "feature_names": list(split.train.feature_names),
        "task": BINARY_CLASSIFIER,
        "threshold": 0.5,
        "labels": ["negative", "positive"],
    }
    run = {
        "seed": seed,
        "epochs_planned": epochs,
        "epochs_run": len(history.epoch),
        "batch_size": batch_size,
        "split": {
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
        },
    }
    curves = {
        **{k: [float(v) for v in vs] for k, vs in history.history.items()},
        "val_auc": val_auc,
    }
    save_with_attributes(
        model,
        target,
        {SCHEMA_ATTR: schema, METRICS_ATTR: {**metrics, "training": run, "history": curves}},
    )
    return TrainResult(target, metrics, len(history.epoch), seed, curves)


def save_with_attributes(model: Any, target: Path, attributes: dict[str, Any]) -> None:
    """Save a Keras model as HDF5 with extra JSON root attributes, atomically."""
    import warnings

    import h5py

    with atomic_path(target) as temporary:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            model.save(temporary)
        with h5py.File(temporary, "a") as handle:
            for key, value in attributes.items():
                handle.attrs[key] = json.dumps(value)


def export_trained(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Any:
    """Export a network :func:`train_pima` saved, with its own rows as the parity gate's data:
    ``data`` (the CSV it was trained on) or the bundled Pima CSV. ``options`` go to
    :func:`portanet.export.export_model`; returns its :class:`~portanet.export.ExportResult`.
    The gate knows no dataset: this is where the Pima rows come from."""
    from portanet.export import export_model

    return export_model(source, target, data=data or pima_csv_path(), **options)
