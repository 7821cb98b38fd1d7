"""A gate that cannot be fooled: a Keras model with one bias changed enough to flip decisions
fails against the faithful ONNX export in both tolerance modes, for every input kind; integer
inputs (token ids) are never nudged, and real ids work as gate data."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.errors import InputError, ParityError
from portanet.export import export_model
from portanet.export.keras.load import quiet_tensorflow
from portanet.export.verify.gate import verify
from portanet.export.verify.noise import ULP

quiet_tensorflow()
import keras  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


def _tabular():
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def _image():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _sequence():
    return keras.Sequential(
        [keras.Input((6, 3)), keras.layers.LSTM(4), keras.layers.Dense(1, activation="sigmoid")]
    )


def _embedding():
    """Token ids held in a float32 input (the Keras default), read by an Embedding whose
    vectors are as far apart as trained ones: the next id moves the output a lot."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Embedding(
                50, 4, embeddings_initializer=keras.initializers.RandomNormal(stddev=2.0)
            ),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


KINDS = {"tabular": _tabular, "image": _image, "sequence": _sequence, "embedding": _embedding}


@pytest.fixture(scope="module", params=sorted(KINDS))
def faithful_and_tampered(request, tmp_path_factory):
    """(tampered Keras file, faithful ONNX export) for one input kind."""
    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp(request.param)
    model = KINDS[request.param]()
    onnx_path = export_model(model, folder / "faithful.onnx").path
    kernel, bias = model.layers[-1].get_weights()
    bias = bias.copy()
    bias[0] += 0.5  # one bias: enough to flip decisions near the boundary
    model.layers[-1].set_weights([kernel, bias])
    tampered = folder / "tampered.keras"
    model.save(tampered)
    return request.param, tampered, onnx_path


@pytest.mark.parametrize("mode", ["strict", "noise-floor"])
def test_a_tampered_model_fails_in_both_modes(faithful_and_tampered, mode):
    kind, tampered, onnx_path = faithful_and_tampered
    with pytest.raises(ParityError) as failed:
        verify(tampered, onnx_path, tolerance_mode=mode)
    report = failed.value.report
    output = report.outputs[0]
    assert output.flips and output.flips > 0, (kind, output.to_dict())
    assert output.unexplained > 0 and "conversion fault" in str(failed.value)
    assert "own float32 sensitivity" not in str(failed.value)


def test_token_ids_are_never_nudged(tmp_path):
    keras.utils.set_random_seed(3)
    result = export_model(_embedding(), tmp_path / "ids.onnx")
    report, name = result.report, result.schema.inputs[0].name
    assert report.noise["not_nudged"] == [name]
    assert ULP in report.noise["unavailable"] and report.max_abs < 1e-5
    assert result.schema.vocabulary == {name: 50}


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64"])
def test_real_ids_as_gate_data_in_export_and_verify(tmp_path, dtype):
    keras.utils.set_random_seed(3)
    model = _embedding()
    ids = np.random.default_rng(0).integers(0, 50, size=(300, 6)).astype(dtype)
    np.save(tmp_path / "ids.npy", ids)
    result = export_model(model, tmp_path / "m.onnx", data=tmp_path / "ids.npy")
    assert result.report.passed and "300 rows of ids.npy" in result.report.inputs_from
    model.save(tmp_path / "m.keras")
    assert verify(tmp_path / "m.keras", result.path, data=tmp_path / "ids.npy").passed


def test_ids_outside_the_vocabulary_or_fractional_are_refused_with_the_file_row(tmp_path):
    keras.utils.set_random_seed(3)
    ids = np.random.default_rng(0).integers(0, 50, size=(20, 6)).astype(np.float32)
    ids[12, 2] = 3.5
    np.save(tmp_path / "fraction.npy", ids)
    with pytest.raises(InputError, match=r"fraction.npy: input .* got 3.5 in row 12"):
        export_model(_embedding(), tmp_path / "m.onnx", data=tmp_path / "fraction.npy")
    ids[12, 2] = 50
    np.save(tmp_path / "outside.npy", ids)
    with pytest.raises(InputError, match=r"whole ids in \[0, 50\).* got 50 in row 12"):
        export_model(_embedding(), tmp_path / "m.onnx", data=tmp_path / "outside.npy")
