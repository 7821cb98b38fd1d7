import json

import h5py
import numpy as np
import pytest

from portanet.errors import InputError
from portanet.export.keras.h5_probe import probe
from portanet.reference.train import roc_auc, train_pima
from portanet.schema import METRICS_ATTR, SCHEMA_ATTR


def test_default_training_meets_the_quality_bar(trained):
    test = trained.metrics["test"]
    assert test["rows"] == 154
    assert test["accuracy"] >= 0.72, trained.metrics
    assert test["roc_auc"] >= 0.80, trained.metrics
    assert 0 < trained.epochs_run <= 200


def test_saved_h5_is_keras3_with_portanet_attributes(trained):
    with h5py.File(trained.path) as handle:
        assert handle.attrs["keras_version"].startswith("3.")
    raw = probe(trained.path, max_dataset_bytes=1 << 20).attributes
    attrs = {key: json.loads(raw[key]) for key in (SCHEMA_ATTR, METRICS_ATTR)}
    assert attrs[SCHEMA_ATTR]["feature_names"][1] == "glucose"
    assert attrs[SCHEMA_ATTR]["threshold"] == 0.5
    assert attrs[METRICS_ATTR]["test"] == pytest.approx(trained.metrics["test"])


def test_saved_model_takes_raw_features_and_matches_the_metrics(trained):
    import keras

    from portanet.reference.data import load_pima, stratified_split

    model = keras.saving.load_model(trained.path, compile=False)
    assert [layer.name for layer in model.layers][1] == "normalize"
    split = stratified_split(load_pima(), seed=trained.seed)
    scores = model.predict(split.test.features, verbose=0).ravel()
    assert roc_auc(split.test.labels, scores) == pytest.approx(trained.metrics["test"]["roc_auc"])


def test_training_is_reproducible_from_the_seed(tmp_path):
    first = train_pima(tmp_path / "a.h5", epochs=3, seed=11)
    second = train_pima(tmp_path / "b.h5", epochs=3, seed=11)
    assert first.metrics == second.metrics
    import keras

    a = keras.saving.load_model(first.path, compile=False).get_weights()
    b = keras.saving.load_model(second.path, compile=False).get_weights()
    assert len(a) == len(b) == 9  # normalize mean, variance, count + 3 × (kernel, bias)
    for left, right in zip(a, b, strict=True):
        assert np.array_equal(left, right)


@pytest.mark.parametrize(
    "scores, labels, expected",
    [
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        ([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], 1.0),
    ],
    ids=["textbook", "ties", "perfect"],
)
def test_roc_auc(scores, labels, expected):
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_bad_arguments_are_refused_before_training(tmp_path):
    with pytest.raises(InputError, match="epochs"):
        train_pima(tmp_path / "m.h5", epochs=0)
    with pytest.raises(InputError, match=r"\.h5"):
        train_pima(tmp_path / "m.keras")


def test_the_trainer_exports_with_its_own_rows_as_gate_data(exported):
    """``export_trained`` (the conftest's ``exported``) passes the Pima CSV explicitly."""
    report = exported.report
    assert not report.synthetic and report.batches[0][:3] == (
        "768 rows of pima-indians-diabetes.csv",
        0,
        768,
    )
