import pytest

from conftest import LEGACY_MLP, LEGACY_MOBILENET, need
from portanet.errors import ModelLoadError
from portanet.keras_io import detect_format, h5_keras_version, load_keras


def test_legacy_keras2_file_is_refused_by_plain_keras3_and_loaded_here():
    import keras

    need(LEGACY_MLP)
    with pytest.raises(Exception):
        keras.saving.load_model(LEGACY_MLP)
    loaded = load_keras(LEGACY_MLP)
    assert loaded.loader == "tf_keras" and loaded.keras_version == "2.2.4"
    assert loaded.model.inputs[0].shape.as_list() == [None, 8]
    assert len(loaded.sha256) == 64


def test_teachable_machine_file_routes_to_tf_keras():
    assert h5_keras_version(need(LEGACY_MOBILENET)) == "2.4.0"


def test_keras3_h5_routes_to_keras3(trained):
    loaded = load_keras(trained.path)
    assert loaded.loader == "keras" and loaded.keras_version.startswith("3.")


def test_keras_zip_format_loads_with_keras3(trained, tmp_path):
    import keras

    model = keras.saving.load_model(trained.path, compile=False)
    model.save(tmp_path / "m.keras")
    loaded = load_keras(tmp_path / "m.keras")
    assert loaded.format == "keras" and loaded.loader == "keras"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"hello, I am text", "not a model file"),
    (b"", "not a model file")], ids=["missing", "text", "empty"])
def test_not_a_model_is_a_model_load_error(tmp_path, content, message):
    path = tmp_path / "model.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_keras(path)


def test_hdf5_without_a_model_config_is_refused(tmp_path):
    import h5py

    with h5py.File(tmp_path / "weights.h5", "w") as handle:
        handle["w"] = [1.0, 2.0]
    assert detect_format(tmp_path / "weights.h5") == "h5"
    with pytest.raises(ModelLoadError, match="model_config"):
        load_keras(tmp_path / "weights.h5")
