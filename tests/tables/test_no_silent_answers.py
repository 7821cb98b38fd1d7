"""Each case of issue 9 §2 reproduced first: kept columns that shadow outputs, repeated column
names, headers for a model without feature names, NaN probabilities, overflow, JSON NaN/null,
TSV; and the output columns of a regression model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import portanet
from portanet.errors import InputError
from portanet.reference.data import PIMA_FEATURES, load_pima
from portanet.tables.infer import infer_file
from tests.builders import tiny_regression
from tests.helpers import COMMITTED_ONNX, run_cli

HEADER = ",".join(PIMA_FEATURES)


@pytest.fixture(scope="module")
def pima():
    return portanet.load(COMMITTED_ONNX)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return portanet.load(tiny_regression(tmp_path_factory.mktemp("regression")))


def _pima_table(rows: int = 6) -> pa.Table:
    features = load_pima().features[:rows]
    columns = {n: features[:, i] for i, n in enumerate(PIMA_FEATURES)}
    columns["label"] = ["truth"] * rows  # the user's ground truth, named like an output column
    return pa.table(columns)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_kept_column_named_like_an_output_is_refused_and_can_be_renamed(pima, tmp_path, suffix):
    table = _pima_table()
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        pacsv.write_csv(table, source)
    elif suffix == ".parquet":
        pq.write_table(table, source)
    else:
        source.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    with pytest.raises(InputError, match=r"kept columns \['label'\].*label=label_input"):
        infer_file(pima, source, tmp_path / f"out{suffix}", keep_columns=["label"])
    assert not (tmp_path / f"out{suffix}").exists()
    infer_file(pima, source, tmp_path / "out.jsonl", keep_columns=["label=true_label"])
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["true_label"] for r in rows] == ["truth"] * 6
    assert {r["label"] for r in rows} <= {"negative", "positive"}


def test_a_feature_column_can_be_kept_from_a_csv(pima, tmp_path):
    """Exit 70 before: the column was asked of pyarrow twice."""
    pacsv.write_csv(_pima_table(), tmp_path / "in.csv")
    infer_file(pima, tmp_path / "in.csv", tmp_path / "out.csv", keep_columns=["glucose"])
    out = pacsv.read_csv(tmp_path / "out.csv").to_pydict()
    assert out["glucose"] == load_pima().features[:6, 1].tolist()


@pytest.mark.parametrize(
    "name, text",
    [
        ("csv", f"{HEADER},glucose\n" + "1,2,3,4,5,6,7,8,9\n"),
        ("jsonl", '{"pregnancies": 1, "pregnancies": 2}\n'),
    ],
)
def test_a_column_named_twice_is_refused(pima, tmp_path, name, text):
    (tmp_path / f"in.{name}").write_text(text)
    with pytest.raises(InputError, match=r"once.*\['(glucose|pregnancies)'\]"):
        infer_file(pima, tmp_path / f"in.{name}", tmp_path / "o.csv")


def test_a_header_for_a_model_without_feature_names_needs_positional(regression, tmp_path):
    """Columns b,a,c would have been taken as a,b,c: a silently wrong answer."""
    (tmp_path / "in.csv").write_text("b,a,c\n2,1,3\n")
    (tmp_path / "plain.csv").write_text("2,1,3\n")
    with pytest.raises(InputError, match=r"no feature names.*\['b', 'a', 'c'\].*positional"):
        infer_file(regression, tmp_path / "in.csv", tmp_path / "o.csv")
    infer_file(regression, tmp_path / "in.csv", tmp_path / "o.csv", positional=True)
    infer_file(regression, tmp_path / "plain.csv", tmp_path / "p.csv")  # no header: positional
    out = pacsv.read_csv(tmp_path / "o.csv").to_pydict()
    expected = regression.predict(np.array([[2.0, 1.0, 3.0]]))[0]
    assert list(out) == ["prediction_0", "prediction_1"]
    assert np.allclose([out["prediction_0"][0], out["prediction_1"][0]], expected)
    assert (tmp_path / "o.csv").read_text() == (tmp_path / "p.csv").read_text()


def test_positional_columns_through_the_cli(regression, tmp_path):
    (tmp_path / "in.csv").write_text("b,a,c\n2,1,3\n")
    refused = run_cli("infer", str(regression.path), str(tmp_path / "in.csv"))
    assert refused.returncode == 2 and b"positional" in refused.stderr
    taken = run_cli("infer", str(regression.path), str(tmp_path / "in.csv"), "--positional-columns")
    assert taken.returncode == 0, taken.stderr.decode()


def test_a_nan_probability_gets_no_label(pima, tmp_path):
    rows = load_pima().features[:3].copy()
    rows[1, 2] = np.nan
    labels = pima.labels_for(pima.predict(rows, allow_nan=True))
    assert np.ma.is_masked(labels) and labels.mask.tolist() == [False, True, False]
    np.save(tmp_path / "x.npy", rows)
    infer_file(pima, tmp_path / "x.npy", tmp_path / "o.csv", allow_nan=True)
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[2].endswith(",") and lines[2].split(",")[0] in ("nan", "NaN", "")
    assert lines[1].split(",")[1].strip('"') in ("negative", "positive")


@pytest.mark.parametrize(
    "suffix, text, message",
    [
        (
            ".csv",
            f"{HEADER}\n6,148,72,35,0,33.6,0.627,1e39\n",
            "line 2, column 'age': expected a number, got 1e+39, outside float32 range",
        ),
        (
            ".jsonl",
            '{"pregnancies": 6, "glucose": 148, "blood_pressure": 72, "skin_thickness": 35, '
            '"insulin": 0, "bmi": 33.6, "diabetes_pedigree": 0.627, "age": 1e39}\n',
            "line 1, column 'age': expected a number, got 1e+39, outside float32 range",
        ),
        (
            ".jsonl",
            '{"pregnancies": 6, "glucose": NaN, "blood_pressure": 72, "skin_thickness": 35, '
            '"insulin": 0, "bmi": 33.6, "diabetes_pedigree": 0.627, "age": 50}\n',
            "column 'glucose': expected a finite number, got NaN",
        ),
        (
            ".jsonl",
            '{"pregnancies": 6, "glucose": null, "blood_pressure": 72, "skin_thickness": 35, '
            '"insulin": 0, "bmi": 33.6, "diabetes_pedigree": 0.627, "age": 50}\n',
            "column 'glucose': expected a finite number, got null",
        ),
    ],
    ids=["csv-overflow", "jsonl-overflow", "json-nan", "json-null"],
)
def test_values_are_reported_as_what_they_are(pima, tmp_path, suffix, text, message):
    (tmp_path / f"in{suffix}").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning may leak either
        with pytest.raises(InputError) as caught:
            infer_file(pima, tmp_path / f"in{suffix}", tmp_path / "o.csv")
    assert message in str(caught.value)


def test_overflow_is_refused_even_with_allow_nan_and_in_predict(pima, tmp_path):
    (tmp_path / "in.csv").write_text(f"{HEADER}\n6,148,72,35,0,33.6,0.627,-1e39\n")
    with pytest.raises(InputError, match="outside float32 range"):
        infer_file(pima, tmp_path / "in.csv", tmp_path / "o.csv", allow_nan=True)
    np.save(tmp_path / "x.npy", np.array([[6, 148, 72, 35, 0, 33.6, 0.627, 1e39]]))
    with pytest.raises(
        InputError,
        match="row 0, column .age.: expected a number, got 1e\\+39, outside float32 range",
    ):
        infer_file(pima, tmp_path / "x.npy", tmp_path / "o.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="outside float32 range in row 0"):
            pima.predict(np.array([[6, 148, 72, 35, 0, 33.6, 0.627, 1e39]]))


def test_tsv_is_read_as_tab_separated(pima, tmp_path):
    features = load_pima().features[:4]
    text = (
        "\t".join(PIMA_FEATURES)
        + "\n"
        + "".join("\t".join(repr(float(v)) for v in row) + "\n" for row in features)
    )
    (tmp_path / "in.tsv").write_text(text)
    infer_file(pima, tmp_path / "in.tsv", tmp_path / "o.csv")
    got = pacsv.read_csv(tmp_path / "o.csv").to_pydict()["probability"]
    assert np.allclose(got, pima.predict(features)[:, 0], atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"top_k": 2}, "top k ranks the classes of a multiclass classifier"),
        ({"image_range": "0..1"}, "applies to an image input"),
        ({"channel_order": "bgr"}, "applies to an image input"),
    ],
    ids=["top-k-on-binary", "image-range-on-table", "channel-order-on-table"],
)
def test_options_that_cannot_apply_are_refused_not_ignored(tmp_path, options, message):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(PIMA_FEATURES) + "\n6,148,72,35,0,33.6,0.627,50\n")
    with pytest.raises(InputError, match=message):
        infer_file(portanet.load(COMMITTED_ONNX), rows, tmp_path / "out.csv", **options)
    assert not (tmp_path / "out.csv").exists()
