import numpy as np
import pytest

from portanet.errors import InputError
from portanet.reference.data import PIMA_FEATURES, load_pima, pima_csv_path, stratified_split


def test_bundled_pima_is_complete():
    data = load_pima()
    assert data.features.shape == (768, 8) and data.features.dtype == np.float32
    assert data.feature_names == PIMA_FEATURES
    assert int(data.labels.sum()) == 268
    assert pima_csv_path().is_file()


def test_split_is_deterministic_stratified_and_disjoint():
    data = load_pima()
    one, two = stratified_split(data, seed=3), stratified_split(data, seed=3)
    other = stratified_split(data, seed=4)
    assert np.array_equal(one.test.features, two.test.features)
    assert not np.array_equal(one.test.features, other.test.features)
    sizes = [len(one.train), len(one.validation), len(one.test)]
    assert sum(sizes) == 768 and sizes == [460, 154, 154]
    for part in (one.train, one.validation, one.test):
        assert abs(part.labels.mean() - 268 / 768) < 0.01
    rows = {tuple(r) for part in (one.train, one.validation, one.test) for r in part.features}
    assert len(rows) == len({tuple(r) for r in data.features})


def test_bad_fractions_and_missing_file_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="fractions"):
        stratified_split(load_pima(), validation=0.6, test=0.5)
    with pytest.raises(InputError, match="no such file"):
        load_pima(tmp_path / "none.csv")
