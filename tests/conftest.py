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
