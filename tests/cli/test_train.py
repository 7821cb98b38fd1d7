"""portanet.cli.train (``portanet train``): the reference network trained for a few epochs,
saved where --output says, its metrics printed; what typer refuses is exit 2."""

import pytest
from typer.testing import CliRunner

from portanet.cli import app
from tests.helpers import run_cli

runner = CliRunner()


@pytest.mark.slow
def test_train_saves_a_keras_file_and_prints_its_metrics(tmp_path):
    import keras

    target = tmp_path / "pima.h5"
    result = runner.invoke(app, ["train", "--epochs", "2", "--seed", "3", "--output", str(target)])
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(target, compile=False)
    assert [layer.name for layer in model.layers][-3:] == ["hidden_1", "hidden_2", "probability"]
    assert model.output_shape == (None, 1)
    assert "(seed 3, " in result.stdout and "best weights kept" in result.stdout
    for split in ("validation", "test"):
        assert split in result.stdout


def test_zero_epochs_is_refused_before_training(tmp_path):
    result = run_cli("train", "--epochs", "0", "--output", str(tmp_path / "m.h5"))
    assert result.returncode == 2
    assert "--epochs" in result.stderr.decode() and not (tmp_path / "m.h5").exists()
