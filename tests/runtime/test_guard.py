"""ONNX files that point outside their folder are refused before onnxruntime reads them."""

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

import portanet
from portanet.errors import ModelLoadError, UnsafeModelError
from portanet.runtime.guard import Limits, external_locations
from tests.helpers import COMMITTED_ONNX


def _external_copy(folder: Path, location: str = "weights.bin") -> Path:
    """The reference model saved with every initializer as external data in ``location``."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = onnx.load(str(COMMITTED_ONNX))
    target = folder / "model.onnx"
    onnx.save_model(
        proto,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return target


def _relocate(model_path: Path, location: str) -> None:
    proto = onnx.load(str(model_path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(proto, str(model_path))


def test_external_data_inside_the_folder_loads_and_predicts(tmp_path):
    path = _external_copy(tmp_path / "ok")
    assert {loc for _, loc in external_locations(path.read_bytes())} == {"weights.bin"}
    x = np.ones((2, 8), dtype=np.float32)
    assert np.allclose(portanet.load(path).predict(x), portanet.load(COMMITTED_ONNX).predict(x))


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-file", "symlink-dir"])
def test_external_data_leaving_the_folder_is_refused(tmp_path, kind):
    outside = tmp_path / "outside"
    path = _external_copy(outside)  # the real weights live outside the victim folder
    victim = tmp_path / "victim"
    victim.mkdir()
    model = victim / "model.onnx"
    model.write_bytes(path.read_bytes())
    if kind == "dotdot":
        _relocate(model, "../outside/weights.bin")
    elif kind == "absolute":
        _relocate(model, str(outside / "weights.bin"))
    elif kind == "symlink-file":
        os.symlink(outside / "weights.bin", victim / "weights.bin")
    else:
        os.symlink(outside, victim / "data")
        _relocate(model, "data/weights.bin")
    with pytest.raises(UnsafeModelError, match="weights.bin"):
        portanet.load(model)


def test_in_memory_bytes_with_external_data_are_refused(tmp_path):
    path = _external_copy(tmp_path / "m")
    with pytest.raises(UnsafeModelError, match="in-memory bytes"):
        portanet.load(path.read_bytes())


def test_missing_external_file_is_a_load_error(tmp_path):
    path = _external_copy(tmp_path / "m")
    (tmp_path / "m" / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match="expected that file beside the model"):
        portanet.load(path)


def test_size_limits_are_configurable(tmp_path):
    with pytest.raises(ModelLoadError, match="max_model_bytes"):
        portanet.load(COMMITTED_ONNX, limits=Limits(max_model_bytes=100))
    path = _external_copy(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="max_external_bytes"):
        portanet.load(path, limits=Limits(max_external_bytes=10))


@pytest.mark.parametrize(
    "data",
    [b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x3a\x05abc", b"\x0f\x00"],
    ids=["huge-length", "truncated-varint", "short-payload", "group-wire-type"],
)
def test_malformed_protobuf_is_a_load_error(data):
    with pytest.raises(ModelLoadError, match="malformed"):
        external_locations(data)


def test_sha256_is_verified(tmp_path):
    import hashlib

    digest = hashlib.sha256(COMMITTED_ONNX.read_bytes()).hexdigest()
    assert portanet.load(COMMITTED_ONNX, sha256=digest.upper()).predict(np.ones((1, 8))).shape
    with pytest.raises(UnsafeModelError, match="expected sha256"):
        portanet.load(COMMITTED_ONNX, sha256="0" * 64)
