"""A gate that explains itself: the worst input named, relative error with a floor, a measured
noise floor beside the error, the noise-floor tolerance mode (which accepts the model's own
sensitivity and never a conversion fault), layerwise on exactly the worst rows, and random rows
inside the data's range for inputs of every rank."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from portanet.cli import app
from portanet.errors import InputError, ParityError
from portanet.export.keras.load import quiet_tensorflow
from portanet.export.verify.compare import NOISE_FLOOR, compare_output
from portanet.export.verify.noise import float64_model, nudge

quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")
runner = CliRunner()


def test_relative_error_has_a_floor_and_the_worst_element_is_named():
    ref = np.array([[1e-30, 2.0], [0.0, 4.0], [3.0, 1.0]])
    cand = ref + np.array([[1e-6, 0.0], [2e-6, 0.0], [0.0, 0.5]])
    out = compare_output("y", ref, cand, atol=1e-5, rtol=1e-4)
    assert out.max_rel == pytest.approx(0.5)  # not 1e-6 / 1e-30
    assert (out.worst.row, out.worst.element) == (2, (1,))
    assert (out.worst.reference, out.worst.candidate) == (1.0, 1.5)
    assert out.failing_rows == [2] and out.failing_row_count == 1
    assert out.to_dict()["rel_basis"] == "max(|reference|, atol)"


def test_noise_explains_sensitivity_but_not_a_fault():
    ref = np.zeros((4, 1))
    noise = np.array([[0.1], [0.1], [1e-7], [1e-7]])  # rows 0, 1 sensitive; 2, 3 stable
    sensitive = ref + np.array([[0.09], [0.2], [0.0], [0.0]])
    faulty = ref + np.array([[0.0], [0.0], [0.05], [0.0]])
    strict = compare_output("y", ref, sensitive, noise=noise)
    assert not strict.passed and strict.explained == strict.violations == 2
    assert "the noise-floor tolerance mode accepts it" in strict.verdict()
    assert compare_output("y", ref, sensitive, noise=noise, tolerance_mode=NOISE_FLOOR).passed
    fault = compare_output("y", ref, faulty, noise=noise, tolerance_mode=NOISE_FLOOR)
    assert not fault.passed and fault.unexplained == 1 and fault.unexplained_rows == [2]
    assert "a conversion fault" in fault.verdict()
    with pytest.raises(InputError, match="tolerance mode"):
        compare_output("y", ref, ref, tolerance_mode="lenient")


def test_nudged_inputs_move_one_ulp_and_integers_stay():
    x = np.array([1.0, -2.0, 0.0], np.float32)
    moved = nudge({"x": x, "ids": np.arange(3)}, np.random.default_rng(0))
    assert np.array_equal(np.abs(moved["x"] - x), np.spacing(np.abs(x)))
    assert np.array_equal(moved["ids"], np.arange(3))


@pytest.mark.parametrize("lib", [keras, tf_keras], ids=["keras3", "tf-keras"])
def test_the_float64_model_computes_the_same_in_float64(lib):
    model = lib.Sequential(
        [lib.Input((5,)), lib.layers.Dense(4, activation="tanh"), lib.layers.Dense(2)]
    )
    wide = float64_model(model)
    x = np.random.default_rng(0).normal(size=(6, 5))
    narrow = np.asarray(model(x.astype(np.float32)))
    precise = np.asarray(wide(x))
    assert precise.dtype == np.float64 and np.abs(precise - narrow).max() < 1e-5
    assert not np.array_equal(precise, narrow.astype(np.float64))


def _sensitive_lstm():
    """Four stacked LSTMs with large random weights: float32 rounding grows over the steps."""

    def init():
        return keras.initializers.RandomNormal(0.0, 0.5)

    layers = [
        keras.layers.LSTM(
            24,
            return_sequences=i < 3,
            kernel_initializer=init(),
            recurrent_initializer=init(),
            name=f"lstm_{i}",
        )
        for i in range(4)
    ]
    return keras.Sequential(
        [keras.Input((40, 1)), *layers, keras.layers.Dense(1, name="out")], name="sensitive"
    )


@pytest.fixture(scope="module")
def sensitive_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("sensitive") / "lstm.keras"
    _sensitive_lstm().save(path)
    return path


def test_model_sensitivity_fails_strict_and_passes_the_noise_floor_mode(sensitive_model, tmp_path):
    from portanet.export import export_model

    with pytest.raises(ParityError) as failed:
        export_model(sensitive_model, tmp_path / "strict.onnx")
    report = failed.value.report
    (out,) = report.outputs
    assert out.violations > 0 and out.unexplained == 0, out.verdict()
    assert report.noise["methods"].keys() == {
        "inputs nudged by one float32 ulp",
        "reference recomputed in float64",
    }
    message = str(failed.value)
    assert f"worst at row {out.worst.row} ({report.where(out.worst.row)})" in message
    assert "not a conversion fault" in message and "noise-floor tolerance mode" in message
    assert "--" not in message  # a library message names no CLI flag
    # Layerwise ran on exactly the worst rows, and blames no layer.
    assert report.layerwise.input_rows[0] == out.worst.row == out.failing_rows[0]
    assert report.layerwise.first_beyond_noise is None
    assert not (tmp_path / "strict.onnx").exists()

    cli = runner.invoke(
        app,
        [
            "export",
            str(sensitive_model),
            "--output",
            str(tmp_path / "floor.onnx"),
            "--tolerance-mode",
            "noise-floor",
            "--report",
            str(tmp_path / "floor.json"),
        ],
    )
    assert cli.exit_code == 0, cli.output
    accepted = json.loads((tmp_path / "floor.json").read_text())
    (out,) = accepted["outputs"]
    assert accepted["passed"] and accepted["tolerance_mode"] == "noise-floor"
    assert out["violations"] == out["explained"] > 0 and "accepted in noise-floor mode" in " ".join(
        cli.output.split()
    )
    assert (tmp_path / "floor.onnx").exists()


def test_the_noise_floor_mode_never_hides_a_conversion_fault(sensitive_model, tmp_path):
    from portanet.export import export_model

    export_model(sensitive_model, tmp_path / "good.onnx", tolerance_mode=NOISE_FLOOR)
    proto = onnx.load(str(tmp_path / "good.onnx"))
    (kernel,) = [
        t
        for t in proto.graph.initializer  # the Dense output kernel
        if tuple(t.dims) == (24, 1) and t.data_type == onnx.TensorProto.FLOAT
    ]
    shifted = onnx.numpy_helper.to_array(kernel).copy()
    shifted[3] += np.float32(0.2)
    kernel.CopyFrom(onnx.numpy_helper.from_array(shifted, kernel.name))
    onnx.save(proto, str(tmp_path / "faulty.onnx"))
    result = runner.invoke(
        app,
        [
            "verify",
            str(sensitive_model),
            str(tmp_path / "faulty.onnx"),
            "--tolerance-mode",
            "noise-floor",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    (out,) = data["outputs"]
    assert out["violations"] > out["explained"]
    assert data["layerwise"]["first_beyond_noise"] == "out"


def test_gate_data_bounds_random_rows_for_inputs_of_every_rank(tmp_path):
    from portanet.export import export_model

    model = keras.Sequential(
        [
            keras.Input((12, 1)),
            keras.layers.Conv1D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    prices = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, (50, 12, 1)), axis=1)
    np.save(tmp_path / "prices.npy", prices.astype(np.float32))
    result = export_model(model, tmp_path / "m.onnx", data=tmp_path / "prices.npy")
    report = result.report
    assert not report.synthetic and "inside the data's observed range" in report.inputs_from
    from portanet.export.verify.inputs import gate_inputs

    feeds = gate_inputs(result.schema, data=tmp_path / "prices.npy").feeds
    (x,) = feeds.values()
    assert (x[50:] >= prices.min(axis=0) - 1e-4).all()
    assert (x[50:] <= prices.max(axis=0) + 1e-4).all()
    assert x[50:].min() > 80  # not standard-normal batches beside real prices


def test_synthetic_inputs_say_so(tmp_path):
    from portanet.export import export_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    report = export_model(model, tmp_path / "m.onnx").report
    assert report.synthetic and report.inputs_from.startswith("synthetic")
    assert "real rows as gate data give a stronger proof" in report.inputs_from
    assert [b[0] for b in report.batches] == [
        "random batch 1 of 1 rows",
        "random batch 2 of 7 rows",
        "random batch 3 of 1024 rows",
    ]
    assert report.where(5) == "random batch 2 of 7 rows, its row 4"


def test_the_cli_names_the_flag_that_accepts_the_models_own_sensitivity(sensitive_model, tmp_path):
    from tests.helpers import run_cli

    result = run_cli("export", str(sensitive_model), "--output", str(tmp_path / "m.onnx"))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "hint: every error out of tolerance is within the model's own float32 noise" in stderr
    assert "--tolerance-mode noise-floor accepts it" in stderr
