"""Paths and helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real third-party files; present on the team's machines and in CI, absent on a bare clone.
SHARED = REPO.parent / "shared" / "data"
LEGACY = SHARED / "legacy-h5"
LEGACY_MLP = LEGACY / "keras224_pima_mlp.h5"
LEGACY_MOBILENET = LEGACY / "keras240_teachable_mobilenet.h5"
#: Small stand-ins built with tf-keras (tests/legacy_fixtures.py), committed.
FIXTURES = REPO / "tests" / "fixtures" / "legacy"
STANDIN_MLP = FIXTURES / "keras224_style_mlp.h5"
STANDIN_DEPTHWISE = FIXTURES / "keras240_style_depthwise.h5"
STANDIN_TEACHABLE = FIXTURES / "teachable_style_nested.h5"
COMMITTED_ONNX = REPO / "models" / "pima_mlp.onnx"
COMMITTED_H5 = REPO / "models" / "pima_mlp.h5"
#: Set by .ci/run: a missing ../shared folder fails the real-world tests instead of skipping them.
REQUIRE_SHARED = "PORTANET_REQUIRE_SHARED"


def real_file(path: Path) -> Path:
    """A real third-party file from ../shared: skip (bare clone) or fail (CI) when absent."""
    if path.exists():
        return path
    message = (
        f"{path.name}: the real-world file is missing because {path.parent} does not "
        f"exist here (../shared/data sits beside the clone on the team's machines and CI)"
    )
    if os.environ.get(REQUIRE_SHARED):
        pytest.fail(message + f"; {REQUIRE_SHARED} is set", pytrace=False)
    pytest.skip(message)


def run_cli(
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m portanet`` in a real subprocess."""
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "portanet", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd or REPO,
        env=full,
        timeout=timeout,
    )


def sample_inputs(model, rows: int, seed: int = 0) -> list:
    """Seeded inputs for a Keras model, in the ranges the parity gate would use."""
    import numpy as np

    from portanet.export.convert.keras_to_onnx import keras_signature, trace_keras
    from portanet.export.verify.hints import input_hints
    from portanet.export.verify.inputs import random_array

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

    from portanet.export.convert.keras_to_onnx import pack_inputs
    from portanet.export.convert.layertrace import record_outputs, walk_layers

    x = pack_inputs(model, sample_inputs(model, rows, seed))
    norms = [
        layer for _, layer in walk_layers(model) if type(layer).__name__ == "BatchNormalization"
    ]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    for _, layer in walk_layers(model):
        if type(layer).__name__ == "LayerScale":
            layer.gamma.assign(np.full(layer.gamma.shape, 0.5, dtype="float32"))
    path, last = [
        (p, layer) for p, layer in walk_layers(model) if getattr(layer, "kernel", None) is not None
    ][-1]
    values = record_outputs(model, lambda: model(x, training=False), keep=path.__eq__)
    spread = float(np.std(values[path][0]))
    last.set_weights([w / spread for w in last.get_weights()])
