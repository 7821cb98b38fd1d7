import json

import numpy as np
import onnx
import pytest

from portanet.errors import InputError, ParityError
from portanet.export.verify.gate import verify
from portanet.export.verify.inputs import gate_inputs
from portanet.runtime import load
from tests.helpers import run_cli


def _perturb(source, target):
    proto = onnx.load(str(source))
    init = max(proto.graph.initializer, key=lambda t: onnx.numpy_helper.to_array(t).size)
    array = onnx.numpy_helper.to_array(init).copy()
    array.flat[3] *= -4.0
    init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    onnx.save(proto, str(target))


def test_verify_passes_on_the_export(exported, trained):
    report = verify(trained.path, exported.path)
    assert report.passed and report.samples == 1 + 7 + 1024


def test_the_gate_knows_no_dataset(exported):
    """An 8-feature model gets no Pima rows from the gate: without data its inputs are
    synthetic (the reference trainer passes its rows itself)."""
    inputs = gate_inputs(load(exported.path).schema, seed=1)
    assert inputs.synthetic and "Pima" not in inputs.description
    assert len(inputs.feeds["features"]) == 1 + 7 + 1024


def test_verify_on_given_rows(exported, trained, tmp_path):
    from portanet.reference.data import pima_csv_path

    report = verify(trained.path, exported.path, data=pima_csv_path())
    assert report.passed and "rows of pima-indians-diabetes.csv" in report.inputs_from


def test_perturbed_onnx_fails_verify_with_exit_1(exported, trained, tmp_path):
    bad = tmp_path / "perturbed.onnx"
    _perturb(exported.path, bad)
    with pytest.raises(ParityError) as failed:
        verify(trained.path, bad)
    report = failed.value.report
    assert not report and report.outputs[0].max_abs > 1e-3
    result = run_cli("verify", str(trained.path), str(bad), "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["outputs"][0]["violations"] > 0
    assert "probability: max abs" in result.stderr.decode()


def test_export_with_a_failing_gate_exits_1_and_leaves_nothing(standin_mlp, tmp_path):
    target = tmp_path / "strict.onnx"
    result = run_cli(
        "export", str(standin_mlp), "--output", str(target), "--atol", "0", "--rtol", "0"
    )
    assert result.returncode == 1, result.stderr
    assert "differ beyond tolerance" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_random_inputs_respect_dtypes_and_data_range(exported):
    schema = load(exported.path).schema
    from portanet.reference.data import pima_csv_path

    inputs = gate_inputs(schema, seed=1, data=pima_csv_path())
    x = inputs.feeds["features"]
    assert x.dtype == np.float32 and x.shape == (768 + 1 + 7 + 1024, 8)
    real = x[:768]
    assert (x[768:] >= real.min(0)).all() and (x[768:] <= real.max(0)).all()


def test_data_with_the_wrong_columns_is_an_input_error(exported, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing"):
        gate_inputs(load(exported.path).schema, data=bad)


def _image_model():
    import keras

    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ],
        name="tiny_cnn",
    )


def test_npy_data_for_an_image_model(tmp_path):
    from portanet.export import export_model

    rows = np.random.default_rng(4).uniform(0, 1, (9, 6, 6, 2)).astype(np.float32)
    np.save(tmp_path / "images.npy", rows)
    result = export_model(_image_model(), tmp_path / "m.onnx", data=tmp_path / "images.npy")
    from portanet.export.verify.inputs import RANDOM_BATCHES

    assert result.report.passed and result.report.samples == 9 + sum(RANDOM_BATCHES)
    assert "9 rows of images.npy" in result.report.inputs_from


def test_npz_data_for_a_multi_input_model(tmp_path):
    import keras

    from portanet.export import export_model

    a, b = keras.Input((3,), name="a"), keras.Input((4, 2), name="b")
    model = keras.Model(
        [a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, keras.layers.Flatten()(b)]))
    )
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "rows.npz", a=rng.normal(size=(11, 3)), b=rng.normal(size=(11, 4, 2)))
    result = export_model(model, tmp_path / "m.onnx", data=tmp_path / "rows.npz")
    assert result.report.passed and "11 rows of rows.npz" in result.report.inputs_from
    np.savez(tmp_path / "short.npz", a=rng.normal(size=(11, 3)))
    with pytest.raises(InputError, match="missing \\['b'\\]"):
        export_model(model, tmp_path / "x.onnx", data=tmp_path / "short.npz")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 6, 6, 3), np.float32), r"expects arrays of shape \(rows, 6, 6, 2\)"),
        (np.zeros((4, 36, 2), np.float32), r"got \(4, 36, 2\)"),
        (np.array([["a"] * 72] * 2).reshape(2, 6, 6, 2), "expects numbers"),
    ],
    ids=["wrong-channels", "wrong-rank", "strings"],
)
def test_arrays_that_do_not_fit_the_model_are_input_errors(tmp_path, array, message):
    from portanet.export import export_model

    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError, match=message):
        export_model(_image_model(), tmp_path / "m.onnx", data=tmp_path / "bad.npy")
