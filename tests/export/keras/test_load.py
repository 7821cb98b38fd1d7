import json

import h5py
import pytest

from portanet.errors import ModelLoadError
from portanet.export.keras.load import detect_format, h5_keras_version, load_keras
from tests.helpers import (
    LEGACY_MLP,
    LEGACY_MOBILENET,
    STANDIN_DEPTHWISE,
    STANDIN_MLP,
    STANDIN_TEACHABLE,
    real_file,
)

#: (file, its keras_version, input shape): real third-party files and their small stand-ins.
LEGACY_FILES = [
    pytest.param(
        LEGACY_MLP, "2.2.4", [None, 8], id="real-keras224-mlp", marks=pytest.mark.realworld
    ),
    pytest.param(
        LEGACY_MOBILENET,
        "2.4.0",
        [None, 224, 224, 3],
        id="real-keras240-teachable",
        marks=pytest.mark.realworld,
    ),
    pytest.param(STANDIN_MLP, "2.2.4", [None, 8], id="standin-keras224-mlp-lr"),
    pytest.param(STANDIN_DEPTHWISE, "2.4.0", [None, 16, 16, 3], id="standin-depthwise-groups"),
    pytest.param(STANDIN_TEACHABLE, "2.4.0", [None, 32, 32, 3], id="standin-teachable-nested"),
]


@pytest.mark.parametrize("path, version, shape", LEGACY_FILES)
def test_legacy_keras2_files_are_refused_by_plain_keras3_and_loaded_here(path, version, shape):
    import keras

    path = real_file(path) if "shared" in path.parts else path
    assert h5_keras_version(path) == version
    # Keras' own loader fails with a different exception type per version: any will do
    with pytest.raises(Exception):  # noqa: B017
        keras.saving.load_model(path)
    loaded = load_keras(path)
    assert loaded.loader == "tf_keras" and loaded.keras_version == version
    assert loaded.model.inputs[0].shape.as_list() == shape
    assert len(loaded.sha256) == 64


def test_committed_standins_match_what_the_script_builds(tmp_path):
    """The committed stand-ins are what tests/legacy_fixtures.py builds today."""
    import tf_keras

    from tests.legacy_fixtures import FIXTURES, build, model_configs

    tf_keras.backend.clear_session()  # layer names count from zero, as in a fresh process
    build(tmp_path)
    assert model_configs(tmp_path) == model_configs(FIXTURES)


def test_keras3_h5_routes_to_keras3(trained):
    loaded = load_keras(trained.path)
    assert loaded.loader == "keras" and loaded.keras_version.startswith("3.")


def test_keras_zip_format_loads_with_keras3(trained, tmp_path):
    import keras

    model = keras.saving.load_model(trained.path, compile=False)
    model.save(tmp_path / "m.keras")
    loaded = load_keras(tmp_path / "m.keras")
    assert loaded.format == "keras" and loaded.loader == "keras"


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"hello, I am text", "not a model file"), (b"", "not a model file")],
    ids=["missing", "text", "empty"],
)
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


def _tf_keras_model():
    import tf_keras

    return tf_keras.Sequential(
        [
            tf_keras.Input((5,)),
            tf_keras.layers.Dense(4, activation="relu"),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )


@pytest.mark.parametrize(
    "version, loader",
    [("2.6.0-tf", "tf_keras"), ("2.15.0", "tf_keras"), ("3.4.1", "keras")],
    ids=["tf.keras-2.6", "keras-2.15", "keras-3.4"],
)
def test_h5_files_route_by_their_keras_version(tmp_path, version, loader):
    import h5py

    source = tmp_path / "model.h5"
    if loader == "keras":
        import keras

        keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)]).save(source)
    else:
        _tf_keras_model().save(source)
    with h5py.File(source, "a") as handle:
        handle.attrs["keras_version"] = version
    loaded = load_keras(source)
    assert (loaded.loader, loaded.keras_version, loaded.format) == (loader, version, "h5")


def test_tf_keras_savedmodel_directory_exports_with_parity(tmp_path):
    from portanet.export import export_model

    _tf_keras_model().save(tmp_path / "saved", save_format="tf")
    result = export_model(tmp_path / "saved", tmp_path / "saved.onnx")
    assert result.loaded.loader == "tf_keras" and result.loaded.format == "savedmodel"
    assert result.report.passed and result.report.max_abs < 1e-5


def test_keras3_exported_savedmodel_loads_through_tensorflow(tmp_path):
    import keras

    from portanet.export import export_model

    inputs = keras.Input((6,), name="features")
    model = keras.Model(
        inputs,
        keras.layers.Dense(3, activation="softmax")(
            keras.layers.Dense(5, activation="relu")(inputs)
        ),
    )
    model.export(tmp_path / "exported", verbose=False)
    # Keras' own loader fails with a different exception type per version: any will do
    with pytest.raises(Exception):  # noqa: B017
        keras.saving.load_model(tmp_path / "exported")
    result = export_model(tmp_path / "exported", tmp_path / "exported.onnx", layerwise=True)
    assert result.loaded.loader == "tensorflow"
    assert [s.name for s in result.schema.inputs] == ["features"]
    assert result.report.passed and result.report.max_abs < 1e-5
    assert result.report.layerwise.rows == []  # a signature has no layers to compare


def test_savedmodel_without_a_serving_signature_is_refused(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "plain"))
    with pytest.raises(ModelLoadError, match="serving_default"):
        load_keras(tmp_path / "plain")


def test_a_live_model_wraps_without_a_file():
    import keras

    from portanet.export.keras.load import from_model

    loaded = from_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)], name="live"))
    assert (loaded.format, loaded.loader, loaded.sha256, loaded.path.name) == (
        "memory",
        "keras",
        None,
        "live",
    )
    assert from_model(_tf_keras_model()).loader == "tf_keras"
    with pytest.raises(ModelLoadError, match="built Keras model"):
        from_model(keras.Sequential([keras.layers.Dense(1)]))


def _keras3_ops_model():
    import keras

    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(5, name="dense")(inputs)
    gated = keras.layers.ReLU(6.0)(hidden + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid
    return keras.Model(inputs, keras.layers.Add(name="merge")([gated, hidden]))


def test_keras3_h5_with_scalar_operations_is_repaired_and_loads(tmp_path):
    import keras
    import numpy as np

    from portanet.export.keras.repair import repair_operations

    model = _keras3_ops_model()
    path = tmp_path / "ops.h5"
    model.save(path)
    with pytest.raises(Exception, match="Only input tensors may be passed as positional"):
        keras.saving.load_model(path, compile=False)  # Keras cannot read its own file
    loaded = load_keras(path)
    x = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    assert np.array_equal(np.asarray(loaded.model(x)), np.asarray(model(x)))
    with h5py.File(path) as handle:
        config = json.loads(handle.attrs["model_config"])
    _, names = repair_operations(config)
    assert len(names) == 2 and "merge" not in names  # the real Add layer is left alone


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "Could not deserialize class 'Foo' because its parent module x cannot be imported. "
            "Full object config: {'module': 'x', 'class_name': 'Foo', 'config': {'a': 1}}",
            "Could not deserialize class 'Foo' because its parent module x cannot be imported",
        ),
        (
            "Unknown layer: 'Bar'.\nPlease ensure you are using a "
            "`keras.utils.custom_object_scope`",
            "Unknown layer: 'Bar'",
        ),
        ("x" * 500, "x" * 199 + "…"),
    ],
)
def test_keras_errors_become_one_readable_line(message, expected):
    from portanet.export.keras.load import keras_message

    assert keras_message(ValueError(message)) == expected
