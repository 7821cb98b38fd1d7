"""The library path end to end: train → .h5 → ONNX (parity-gated) → predictions.

Run: .venv/bin/python examples/quickstart.py   (needs `pip install -e ".[export]"`)
Writes into a temporary folder; the committed models/ stay untouched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import portanet
from portanet.reference.data import load_pima
from portanet.reference.train import export_trained, train_pima


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="portanet-quickstart-"))
    trained = train_pima(work / "pima_mlp.h5", seed=7)
    test = trained.metrics["test"]
    print(
        f"trained {trained.path}: test accuracy {test['accuracy']:.3f}, "
        f"ROC AUC {test['roc_auc']:.3f} after {trained.epochs_run} epochs"
    )

    result = export_trained(trained.path, work / "pima_mlp.onnx")  # Pima rows as gate data
    out = result.report.outputs[0]
    print(
        f"exported {result.path}: parity on {result.report.samples} samples, "
        f"max abs error {out.max_abs:.2e}, {out.flips} flipped decisions"
    )

    model = portanet.load(result.path)  # onnxruntime only: no TensorFlow needed from here
    rows = load_pima().features[:5]
    probabilities = model.predict(rows)[:, 0]
    labels = model.labels_for(model.predict(rows))
    for probability, label in zip(probabilities, labels, strict=False):
        print(f"probability {probability:.3f} → label {label}")
    named = {name: rows[:, i] for i, name in enumerate(model.feature_names)}
    assert (model.predict(named)[:, 0] == probabilities).all()


if __name__ == "__main__":
    main()
