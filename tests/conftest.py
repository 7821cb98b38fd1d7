"""Shared fixtures: real files made through the real libraries, once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import LEGACY_MLP, LEGACY_MOBILENET, STANDIN_MLP, real_file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Fixtures that hand out a real third-party file; tests using them are marked ``realworld``.
REALWORLD_FIXTURES = {"legacy_mlp", "legacy_mobilenet"}
#: What keeps a test out of the fast subset (``-m "not slow"``): training or converting through
#: TensorFlow, a server process, a Ray cluster, a browser. CI runs them all.
SLOW_FIXTURES = {"trained", "exported", "keras224_mlp", "standin_mlp"} | REALWORLD_FIXTURES
SLOW_FOLDERS = {"export", "reference", "serve", "scale", "optimize"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if REALWORLD_FIXTURES & fixtures:
            item.add_marker(pytest.mark.realworld)
        folder = Path(str(item.path)).relative_to(Path(__file__).parent).parts[0]
        if SLOW_FIXTURES & fixtures or folder in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """The seed network trained with default settings (the README's figures)."""
    from portanet.reference.train import train_pima

    path = tmp_path_factory.mktemp("trained") / "pima_mlp.h5"
    return train_pima(path)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory: pytest.TempPathFactory):
    """The trained network exported through the gate, its Pima rows as gate data."""
    from portanet.reference.train import export_trained

    return export_trained(trained.path, tmp_path_factory.mktemp("exported") / "pima_mlp.onnx")


@pytest.fixture
def legacy_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the real Keras 2.2.4 file (the shared one is read-only)."""
    target = tmp_path_factory.mktemp("legacy") / LEGACY_MLP.name
    shutil.copyfile(real_file(LEGACY_MLP), target)
    return target


@pytest.fixture
def standin_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the Keras 2.2.4-style stand-in (tests/legacy_fixtures.py)."""
    target = tmp_path_factory.mktemp("standin") / STANDIN_MLP.name
    shutil.copyfile(STANDIN_MLP, target)
    return target


@pytest.fixture(params=["real", "standin"])
def keras224_mlp(request: pytest.FixtureRequest) -> Path:
    """The real Keras 2.2.4 Pima MLP (realworld) and its stand-in, each in turn."""
    if request.param == "real":
        request.applymarker(pytest.mark.realworld)
        return request.getfixturevalue("legacy_mlp")
    return request.getfixturevalue("standin_mlp")


@pytest.fixture
def legacy_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the real Teachable Machine MobileNet (Keras 2.4.0)."""
    target = tmp_path_factory.mktemp("legacy") / LEGACY_MOBILENET.name
    shutil.copyfile(real_file(LEGACY_MOBILENET), target)
    return target


@pytest.fixture
def seeded():
    """Seed Keras, TensorFlow, numpy and Python so random weights are the same on every run."""
    import keras

    keras.utils.set_random_seed(0)
