"""Hostile Keras files: refused before any of their code runs (the sentinel is never created)."""

import json

import h5py
import numpy as np
import pytest

from portanet.errors import UnsafeModelError
from portanet.export.keras.load import load_keras
from portanet.export.keras.safety import KerasLimits, check_config, iter_layers
from tests.helpers import LEGACY_MOBILENET, STANDIN_TEACHABLE, real_file, run_cli


def _lambda(sentinel):
    # A literal path inside the code object, so the function works wherever it is unmarshalled.
    return eval(f"lambda x: x + (open({str(sentinel)!r}, 'w').close() or 0)")  # noqa: S307


def _keras3_lambda_model(sentinel):
    import keras

    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Lambda(_lambda(sentinel), name="sneaky")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="y")(outputs))


def _tf_keras_lambda_model(sentinel):
    import tf_keras

    inputs = tf_keras.Input((4,), name="x")
    outputs = tf_keras.layers.Lambda(_lambda(sentinel), name="sneaky")(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(1, name="y")(outputs))


@pytest.mark.parametrize(
    "flavour, suffix",
    [("keras3", ".h5"), ("tf_keras", ".h5"), ("keras3", ".keras")],
    ids=["keras3-h5", "tf-keras-h5", "keras3-keras"],
)
def test_lambda_files_are_refused_and_run_nothing(tmp_path, flavour, suffix):
    sentinel = tmp_path / "pwned"
    build = _keras3_lambda_model if flavour == "keras3" else _tf_keras_lambda_model
    model = build(sentinel)
    sentinel.unlink()  # building it ran the lambda once; start clean
    path = tmp_path / f"lambda{suffix}"
    model.save(path)
    if suffix == ".h5":  # the file really is of the flavour under test
        with h5py.File(path) as handle:
            assert handle.attrs["keras_version"].startswith("3." if flavour == "keras3" else "2.")
    with pytest.raises(UnsafeModelError, match="layer 'sneaky' is a Lambda"):
        load_keras(path)
    result = run_cli("export", str(path), "--output", str(tmp_path / "x.onnx"), timeout=180)
    assert result.returncode == 4, result.stderr
    assert "layer 'sneaky' is a Lambda" in result.stderr.decode()
    assert not sentinel.exists() and not (tmp_path / "x.onnx").exists()
    if flavour == "tf_keras":  # the danger is real: opting in runs the file's code
        load_keras(path, allow_unsafe=True)
        assert sentinel.exists()


def test_unknown_custom_layer_is_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="evil")
    class Sneaky(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Sneaky(name="custom")(inputs))
    model.save(tmp_path / "custom.keras")
    with pytest.raises(UnsafeModelError, match="class 'Sneaky'.*custom object"):
        load_keras(tmp_path / "custom.keras")


def _copy_config_into(path, config, **datasets):
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.4.0"
        handle.attrs["model_config"] = json.dumps(config)
        for name, value in datasets.items():
            handle[name] = value
    return path


MLP_CONFIG = {
    "class_name": "Sequential",
    "config": {
        "name": "s",
        "layers": [
            {
                "class_name": "Dense",
                "config": {"name": "d", "units": 2, "batch_input_shape": [None, 3]},
            }
        ],
    },
}


def test_hdf5_external_link_is_refused_without_being_followed(tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as handle:
        handle["data"] = np.arange(3)
    path = _copy_config_into(tmp_path / "link.h5", MLP_CONFIG)
    with h5py.File(path, "a") as handle:
        handle["model_weights"] = h5py.ExternalLink(str(secret), "/data")
    with pytest.raises(UnsafeModelError, match="external link"):
        load_keras(path)


def test_hdf5_external_storage_and_virtual_datasets_are_refused(tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(4, dtype="<f4").tobytes())
    path = _copy_config_into(tmp_path / "external.h5", MLP_CONFIG)
    with h5py.File(path, "a") as handle:
        handle.create_dataset("w", shape=(4,), dtype="<f4", external=[(str(raw), 0, 16)])
    with pytest.raises(UnsafeModelError, match="stores its data in"):
        load_keras(path)
    virtual = _copy_config_into(tmp_path / "virtual.h5", MLP_CONFIG)
    with h5py.File(virtual, "a") as handle:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "d", shape=(4,))
        handle.create_virtual_dataset("v", layout)
    with pytest.raises(UnsafeModelError, match="virtual dataset"):
        load_keras(virtual)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"class_name": "Dense", "config": {"name": "huge", "units": 10**12}}, "units="),
        (
            {
                "class_name": "InputLayer",
                "config": {"name": "in", "batch_input_shape": [None, 10**6, 10**6]},
            },
            "elements per sample",
        ),
        (
            {
                "class_name": "Dense",
                "config": {
                    "name": "act",
                    "units": 2,
                    "activation": {
                        "module": "evil_pkg",
                        "class_name": "function",
                        "config": "steal",
                    },
                },
            },
            "evil_pkg.steal",
        ),
        (
            {"class_name": "TFSMLayer", "config": {"name": "sm", "filepath": "/tmp/x"}},
            "loads and runs another SavedModel",
        ),
    ],
    ids=["absurd-units", "absurd-shape", "custom-function", "tfsmlayer"],
)
def test_config_checks(layer, message):
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [layer]}}
    with pytest.raises(UnsafeModelError, match=message):
        check_config(config, "m.h5", {"Dense"}, KerasLimits())


def test_nested_models_and_wrappers_are_walked():
    inner = {
        "class_name": "Bidirectional",
        "config": {"name": "bi", "layer": {"class_name": "Lambda", "config": {"name": "deep"}}},
    }
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "outer",
            "layers": [{"class_name": "Sequential", "config": {"name": "mid", "layers": [inner]}}],
        },
    }
    names = [name for _, name, _ in iter_layers(config)]
    assert names == ["outer", "mid", "bi", "deep"]
    with pytest.raises(UnsafeModelError, match="'deep' is a Lambda"):
        check_config(config, "m.h5", {"Bidirectional"})


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(LEGACY_MOBILENET, id="real-teachable", marks=pytest.mark.realworld),
        pytest.param(STANDIN_TEACHABLE, id="standin-teachable"),
    ],
)
def test_legacy_files_pass_the_checks(path):
    import tf_keras

    from portanet.export.keras.h5_probe import probe
    from portanet.export.keras.safety import keras_layer_classes

    path = real_file(path) if "shared" in path.parts else path
    attributes = probe(path, max_dataset_bytes=1 << 30).attributes
    assert attributes["keras_version"] == "2.4.0"
    check_config(json.loads(attributes["model_config"]), "tm.h5", keras_layer_classes(tf_keras))


def test_the_probe_turns_a_slow_or_broken_file_into_a_load_error(tmp_path):
    from portanet.errors import ModelLoadError
    from portanet.export.keras.h5_probe import probe

    with pytest.raises(ModelLoadError, match="did not finish in 0 s"):
        probe(STANDIN_TEACHABLE, max_dataset_bytes=1 << 30, timeout=0.01)
    broken = tmp_path / "broken.h5"
    data = bytearray(STANDIN_TEACHABLE.read_bytes()[:4096])
    broken.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="h5py says"):
        probe(broken, max_dataset_bytes=1 << 30)


def test_layers_of_keras_own_applications_are_not_custom_objects(tmp_path):
    import keras
    from keras.src.applications.convnext import LayerScale  # as in every ConvNeXt file

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, LayerScale(0.5, 4, name="scale")(keras.layers.Dense(4)(inputs)))
    model.save(tmp_path / "convnext_like.keras")
    loaded = load_keras(tmp_path / "convnext_like.keras")
    assert type(loaded.model.get_layer("scale")).__name__ == "LayerScale"


def test_a_custom_class_borrowing_a_keras_name_still_runs_nothing(tmp_path):
    import keras

    sentinel = tmp_path / "pwned"

    @keras.saving.register_keras_serializable(package="evil")
    class LayerScale(keras.layers.Layer):  # the name of Keras' own ConvNeXt layer
        def call(self, x):
            open(sentinel, "w").close()
            return x

    inputs = keras.Input((3,))
    keras.Model(inputs, LayerScale(name="spoof")(inputs)).save(tmp_path / "spoof.keras")
    sentinel.unlink()
    result = run_cli("export", str(tmp_path / "spoof.keras"), timeout=180)
    assert result.returncode == 3, result.stderr  # Keras cannot find evil>LayerScale
    assert not sentinel.exists() and not (tmp_path / "spoof.onnx").exists()
