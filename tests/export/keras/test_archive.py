"""``.keras`` archives read for what they are before Keras sees them: hostile members refused
(exit 4, nothing executed), the file's own Keras version recorded and used for routing."""

from __future__ import annotations

import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

from portanet.errors import ModelLoadError, UnsafeModelError
from portanet.export.keras.archive import check_npz, inspect_archive
from portanet.export.keras.load import load_keras, quiet_tensorflow
from tests.helpers import run_cli

quiet_tensorflow()
import keras  # noqa: E402


class _Payload:
    """Unpickling this creates the sentinel (a folder: no file handle left open): what a hostile
    weights file would run."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.mkdir, (self.sentinel,))


def _small_model():
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, members: list[tuple[str, bytes]]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that's the point
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)


def _pickled_npz(sentinel) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{"layers/y/vars/0": np.array([_Payload(str(sentinel))], dtype=object)})
    return buffer.getvalue()


def test_a_duplicated_weights_member_holding_a_pickle_is_refused_and_runs_nothing(tmp_path):
    from keras.src.saving import saving_lib

    sentinel = tmp_path / "pwned"
    honest = tmp_path / "honest.keras"
    saving_lib.save_model(_small_model(), honest, weights_format="npz")
    members = _members(honest)
    assert "model.weights.npz" in members
    hostile = _pickled_npz(sentinel)
    # The payload is real: whoever unpickles it creates the sentinel.
    with zipfile.ZipFile(io.BytesIO(hostile)) as inner:
        np.load(io.BytesIO(inner.read(inner.namelist()[0])), allow_pickle=True)
    assert sentinel.exists()
    sentinel.rmdir()

    path = tmp_path / "twice.keras"
    _write_zip(path, [*members.items(), ("model.weights.npz", hostile)])
    with zipfile.ZipFile(path) as archive:  # the reader Keras uses gets the second one
        assert archive.read("model.weights.npz") == hostile
    with pytest.raises(UnsafeModelError, match="2 members named 'model.weights.npz'"):
        load_keras(path)
    result = run_cli("export", str(path), "--output", str(tmp_path / "x.onnx"), timeout=180)
    assert result.returncode == 4, result.stderr
    assert "members named 'model.weights.npz'" in result.stderr.decode()
    assert not sentinel.exists() and not (tmp_path / "x.onnx").exists()


def test_pickled_npz_weights_are_refused_whatever_keras_would_do(tmp_path):
    from keras.src.saving import saving_lib

    sentinel = tmp_path / "pwned"
    honest = tmp_path / "honest.keras"
    saving_lib.save_model(_small_model(), honest, weights_format="npz")
    members = _members(honest)
    members["model.weights.npz"] = _pickled_npz(sentinel)
    path = tmp_path / "pickle.keras"
    _write_zip(path, list(members.items()))
    with pytest.raises(UnsafeModelError, match=r"array 'layers/y/vars/0.npy' has dtype object"):
        load_keras(path)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("../outside.txt", "path that leaves the archive"),
        ("/etc/cron.d/x", "path that leaves the archive"),
        ("assets\\..\\x", "path that leaves the archive"),
        ("loader.py", "not part of a Keras archive"),
    ],
    ids=["dotdot", "absolute", "backslash", "unexpected"],
)
def test_odd_member_names_are_refused(tmp_path, name, message):
    honest = tmp_path / "honest.keras"
    _small_model().save(honest)
    path = tmp_path / "odd.keras"
    _write_zip(path, [*_members(honest).items(), (name, b"print('hi')")])
    with pytest.raises(UnsafeModelError, match=message):
        inspect_archive(path, max_member_bytes=1 << 30)


def test_a_symbolic_link_member_is_refused(tmp_path):
    honest = tmp_path / "honest.keras"
    _small_model().save(honest)
    path = tmp_path / "link.keras"
    _write_zip(path, list(_members(honest).items()))
    with zipfile.ZipFile(path, "a") as archive:
        info = zipfile.ZipInfo("assets/vocab.txt")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        inspect_archive(path, max_member_bytes=1 << 30)


def test_object_dtype_hdf5_weights_are_refused(tmp_path):
    honest = tmp_path / "honest.keras"
    _small_model().save(honest)
    members = _members(honest)
    weights = tmp_path / "weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "a") as handle:
        handle.create_dataset(
            "sneaky", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype()
        )
    members["model.weights.h5"] = weights.read_bytes()
    path = tmp_path / "object.keras"
    _write_zip(path, list(members.items()))
    with pytest.raises(UnsafeModelError, match=r"\[model.weights.h5\].*'sneaky' holds object"):
        load_keras(path)


def test_npz_headers_are_read_without_loading(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, a=np.zeros(3, dtype=np.float32))
    check_npz(buffer.getvalue(), "ok.npz", 1 << 20)  # numbers pass
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as archive:  # declares 8 TB, holds a few bytes
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 40,)}
        )
        archive.writestr(
            "huge.npy", np.lib.format.MAGIC_PREFIX + b"\x01\x00" + header.getvalue()[8:]
        )
    with pytest.raises(UnsafeModelError, match="'huge.npy' declares shape"):
        check_npz(big.getvalue(), "bomb.npz", 1 << 20)


def _rewrite_metadata(path, target, **changes) -> None:
    members = _members(path)
    metadata = json.loads(members["metadata.json"])
    metadata.update(changes)
    members["metadata.json"] = json.dumps(metadata).encode()
    _write_zip(target, list(members.items()))


def test_the_files_own_keras_version_is_recorded(tmp_path):
    import portanet
    from portanet.export import export_model

    source = tmp_path / "made.keras"
    _small_model().save(source)
    path = tmp_path / "old.keras"
    _rewrite_metadata(source, path, keras_version="3.5.0")
    loaded = load_keras(path)
    assert (loaded.keras_version, loaded.loader) == ("3.5.0", "keras")
    export_model(loaded, tmp_path / "old.onnx")
    assert (
        portanet.load(tmp_path / "old.onnx").metadata["portanet.source"]["keras_version"] == "3.5.0"
    )


@pytest.mark.parametrize("version", [None, "2.13.1", "2.14.0"])
def test_keras2_zip_files_route_to_tf_keras(tmp_path, version):
    import tf_keras

    inputs = tf_keras.Input((3,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, activation="tanh")(inputs))
    path = tmp_path / "k2.keras"
    model.save(path)
    if version:
        _rewrite_metadata(path, tmp_path / "k2v.keras", keras_version=version)
        path = tmp_path / "k2v.keras"
    loaded = load_keras(path)
    assert loaded.loader == "tf_keras"
    assert loaded.keras_version == (version or tf_keras.__version__)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    assert np.allclose(loaded.model(x).numpy(), model(x).numpy())


def test_a_subclassed_model_says_it_holds_no_architecture(tmp_path):
    @keras.saving.register_keras_serializable(package="tests")
    class VAE(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.encoder = keras.layers.Dense(2)

        def call(self, x):
            return self.encoder(x)

    model = VAE()
    model(np.zeros((1, 3), dtype=np.float32))
    path = tmp_path / "vae.keras"
    model.save(path)
    with pytest.raises(
        ModelLoadError,
        match=r"only the class name 'VAE'.*needs the code that "
        r"defines 'VAE'",
    ):
        load_keras(path)
    result = run_cli("export", str(path), timeout=180)
    assert result.returncode == 3, result.stderr
    assert "'?'" not in result.stderr.decode()


def test_a_savedmodel_without_variables_says_the_weights_are_missing(tmp_path):
    import shutil

    import tf_keras

    inputs = tf_keras.Input((3,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))
    folder = tmp_path / "sm"
    model.save(folder, save_format="tf")
    shutil.rmtree(folder / "variables")
    with pytest.raises(ModelLoadError, match="weights are missing from the folder"):
        load_keras(folder)


def test_a_savedmodel_records_the_keras_version_that_wrote_it(tmp_path):
    import tf_keras

    inputs = tf_keras.Input((3,), name="x")
    folder = tmp_path / "sm"
    tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs)).save(folder, save_format="tf")
    metadata = folder / "keras_metadata.pb"
    assert metadata.is_file()
    loaded = load_keras(folder)
    assert (loaded.loader, loaded.keras_version) == ("tf_keras", tf_keras.__version__)
    # The version is the file's: the same folder, rewritten as if by tf.keras 2.14 (a string
    # of the same length, so the protobuf stays valid).
    older = "2.14.0"
    assert len(older) == len(tf_keras.__version__)
    metadata.write_bytes(
        metadata.read_bytes().replace(
            f'"keras_version": "{tf_keras.__version__}"'.encode(),
            f'"keras_version": "{older}"'.encode(),
        )
    )
    again = load_keras(folder)
    assert (again.loader, again.keras_version) == ("tf_keras", older)
