"""Shared fixtures: real files made through the real libraries, once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
LEGACY = SHARED / "legacy-h5"
LEGACY_MLP = LEGACY / "keras224_pima_mlp.h5"
LEGACY_MOBILENET = LEGACY / "keras240_teachable_mobilenet.h5"
COMMITTED_ONNX = REPO / "models" / "pima_mlp.onnx"
COMMITTED_H5 = REPO / "models" / "pima_mlp.h5"


def need(path: Path) -> Path:
    """Fail (not skip) when a shared fixture is missing: CI has ../shared beside the clone."""
    assert path.exists(), f"fixture {path} is missing: ../shared/data must sit beside the repo"
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """The seed network trained with default settings (the README's figures)."""
    from portanet.train import train_pima

    path = tmp_path_factory.mktemp("trained") / "pima_mlp.h5"
    return train_pima(path)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory: pytest.TempPathFactory):
    """The trained network exported through the gate."""
    from portanet.export import export_model

    return export_model(trained.path, tmp_path_factory.mktemp("exported") / "pima_mlp.onnx")


@pytest.fixture(scope="session")
def legacy_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the real Keras 2.2.4 file (the shared one is read-only)."""
    target = tmp_path_factory.mktemp("legacy") / LEGACY_MLP.name
    shutil.copyfile(need(LEGACY_MLP), target)
    return target


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m portanet`` in a real subprocess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "portanet", *args], input=stdin,
                          capture_output=True, cwd=cwd or REPO, env=env, timeout=timeout)


def sample_inputs(model, rows: int, seed: int = 0) -> list:
    """Seeded inputs for a Keras model, in the ranges the parity gate would use."""
    import numpy as np

    from portanet.conversion import keras_signature, trace_keras
    from portanet.sampling import input_hints, random_array

    specs, _ = keras_signature(model)
    hints = input_hints(trace_keras(model, specs)[1], specs)
    rng = np.random.default_rng(seed)
    return [random_array(s, rows, rng, hint=hints.get(s.name)) for s in specs]


def calibrate(model, rows: int = 128, seed: int = 0) -> None:
    """Make a randomly initialised network behave like a trained one, so parity is measured on
    meaningful numbers: BatchNormalization statistics from real activations (one training-mode
    pass with momentum 0), ConvNeXt's LayerScale at 0.5 instead of 1e-6, and the last layer with
    weights scaled so its output has unit spread."""
    import numpy as np

    from portanet.conversion import pack_inputs
    from portanet.layertrace import record_outputs, walk_layers

    x = pack_inputs(model, sample_inputs(model, rows, seed))
    norms = [layer for _, layer in walk_layers(model)
             if type(layer).__name__ == "BatchNormalization"]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    for _, layer in walk_layers(model):
        if type(layer).__name__ == "LayerScale":
            layer.gamma.assign(np.full(layer.gamma.shape, 0.5, dtype="float32"))
    path, last = [(p, layer) for p, layer in walk_layers(model)
                  if getattr(layer, "kernel", None) is not None][-1]
    values = record_outputs(model, lambda: model(x, training=False), keep=path.__eq__)
    spread = float(np.std(values[path][0]))
    last.set_weights([w / spread for w in last.get_weights()])


@pytest.fixture
def seeded():
    """Seed Keras, TensorFlow, numpy and Python so random weights are the same on every run."""
    import keras

    keras.utils.set_random_seed(0)
