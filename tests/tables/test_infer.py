"""`portanet infer` and infer_file: every format in and out, streaming, stdin, kept columns;
and no silent answers: kept columns that shadow outputs, repeated column names, headers for a
model without feature names, NaN probabilities, overflow, JSON NaN/null, TSV, the output columns
of a regression model, options that cannot apply."""

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

ROWS = 40


@pytest.fixture(scope="module")
def model():
    return portanet.load(COMMITTED_ONNX)


@pytest.fixture(scope="module")
def frame():
    """40 Pima rows with an id column, the label column, and features in shuffled order."""
    features = load_pima().features[:ROWS]
    order = [5, 0, 7, 2, 6, 1, 4, 3]
    columns = {"id": [f"p{i:03d}" for i in range(ROWS)]}
    columns.update({PIMA_FEATURES[i]: features[:, i] for i in order})
    columns["outcome"] = load_pima().labels[:ROWS]
    return features, pa.table(columns)


def _raw(features):
    """The independent reference: a plain onnxruntime session on the same file."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(COMMITTED_ONNX), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": np.asarray(features, dtype=np.float32)})[0]


def _expected(model, features):
    return _raw(features)[:, 0]


def _write_input(table, path):
    suffix = path.suffix
    if suffix == ".csv":
        pacsv.write_csv(table, path)
    elif suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    elif suffix == ".json":
        path.write_text(json.dumps(table.to_pylist()))


def _read_output(path):
    if path.suffix == ".npy":
        return {"probability": np.load(path)[:, 0]}
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pydict()
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return {k: [r[k] for r in records] for k in records[0]}
    return pacsv.read_csv(path).to_pydict()


@pytest.mark.parametrize("source", [".csv", ".parquet", ".jsonl", ".json"])
@pytest.mark.parametrize("target", [".csv", ".parquet", ".jsonl", ".npy"])
def test_round_trip_every_format_with_shuffled_columns(model, frame, tmp_path, source, target):
    features, table = frame
    src, dst = tmp_path / f"in{source}", tmp_path / f"out{target}"
    _write_input(table, src)
    keep = () if target == ".npy" else ("id",)
    result = infer_file(model, src, dst, rows_per_batch=16, keep_columns=keep)
    assert result.rows == ROWS
    out = _read_output(dst)
    assert np.allclose(out["probability"], _expected(model, features), atol=1e-6)
    if keep:
        assert list(out["id"]) == table["id"].to_pylist()
        names = model.schema.labels  # the class names stored at export
        assert list(out["label"]) == [names[int(p >= 0.5)] for p in out["probability"]]


def test_npy_input(model, frame, tmp_path):
    features, _ = frame
    np.save(tmp_path / "x.npy", features.astype(np.float64))
    infer_file(model, tmp_path / "x.npy", tmp_path / "o.csv")
    assert np.allclose(
        _read_output(tmp_path / "o.csv")["probability"], _expected(model, features), atol=1e-6
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_stdin_through_the_cli(model, frame, tmp_path, fmt):
    features, table = frame
    src = tmp_path / f"in.{fmt}"
    _write_input(table, src)
    result = run_cli(
        "infer",
        str(COMMITTED_ONNX),
        "-",
        "--stdin-format",
        fmt,
        "--keep-columns",
        "id",
        stdin=src.read_bytes(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "id,probability,label" and len(lines) == ROWS + 1
    got = np.array([float(line.split(",")[1]) for line in lines[1:]])
    assert np.allclose(got, _expected(model, features), atol=1e-6)


def test_300k_rows_streamed_in_small_batches_equal_one_predict(model, tmp_path):
    rng = np.random.default_rng(5)
    pima = load_pima().features
    x = rng.uniform(pima.min(0), pima.max(0), size=(300_000, 8)).astype(np.float32)
    x = np.round(x, 3)
    src = tmp_path / "big.csv"
    pacsv.write_csv(pa.table({n: x[:, i] for i, n in enumerate(PIMA_FEATURES)}), src)
    seen = []
    result = infer_file(model, src, tmp_path / "big.npy", rows_per_batch=4096, on_batch=seen.append)
    assert result.rows == 300_000 and max(seen) <= 4096 and len(seen) >= 300_000 // 4096
    streamed = np.load(tmp_path / "big.npy")[:, 0]
    assert np.array_equal(streamed, _raw(x)[:, 0])  # x was written with 3 decimals: exact


def test_header_only_gives_an_empty_result_with_columns(model, tmp_path):
    src = tmp_path / "h.csv"
    src.write_text("id," + ",".join(PIMA_FEATURES) + "\n")
    result = infer_file(model, src, tmp_path / "o.csv", keep_columns=["id"])
    assert result.rows == 0
    assert (tmp_path / "o.csv").read_text().strip() == "id,probability,label"


def test_unknown_output_suffix_is_refused_before_reading(model, frame, tmp_path):
    with pytest.raises(InputError, match="suffix"):
        infer_file(model, tmp_path / "never-read.csv", tmp_path / "out.xlsx")


# No silent answers (each case was reproduced before it was fixed).

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


def test_several_files_folders_and_globs_are_one_run_like_the_ray_engine(model, frame, tmp_path):
    """Issue 20: the local engine takes the inputs the Ray engine takes (several table files,
    a folder searched recursively, a glob), in sorted order, into one output; hidden files
    and Spark-style markers in folders are skipped."""
    features, table = frame
    data = tmp_path / "data"
    (data / "day=2").mkdir(parents=True)
    pacsv.write_csv(table.slice(0, 15), data / "a.csv")
    pq.write_table(table.slice(15, 15), data / "day=2" / "b.parquet")
    pacsv.write_csv(table.slice(30, 10), data / "c.csv")
    (data / "._a.csv").write_bytes(b"\0\5\26\7")
    (data / "_SUCCESS").write_text("")
    by_folder = infer_file(model, data, tmp_path / "folder.csv", keep_columns=["id"])
    by_list = infer_file(
        model,
        [data / "a.csv", data / "day=2" / "b.parquet", data / "c.csv"],
        tmp_path / "list.csv",
        keep_columns=["id"],
    )
    by_glob = infer_file(model, str(data / "*.csv"), tmp_path / "glob.csv", keep_columns=["id"])
    assert by_folder.rows == by_list.rows == ROWS and by_folder.files == 3
    assert by_glob.rows == 25
    got = pacsv.read_csv(tmp_path / "list.csv").to_pydict()
    assert got["id"] == [f"p{i:03d}" for i in range(ROWS)]
    assert np.allclose(got["probability"], _raw(features)[:, 0], atol=1e-6)
    folder_rows = pacsv.read_csv(tmp_path / "folder.csv").to_pydict()
    assert sorted(folder_rows["id"]) == got["id"]


def test_skip_sets_bad_rows_aside_with_reasons_and_counts_them(tmp_path):
    """Issue 17 §5 / 20: ``--on-error skip`` for the local engine: bad rows are listed with
    file, line and reason beside the output, the others predicted, counts in the summary."""
    header = ",".join(PIMA_FEATURES) + ",id"
    good = "6,148,72,35,0,33.6,0.627,50"
    text = (
        f"{header}\n{good},a\n6,high,72,35,0,33.6,0.627,50,b\n{good},c\n"
        f"6,148,72,35,0,33.6,0.627,1e39,d\n6,148,,35,0,33.6,0.627,50,e\n"
    )
    (tmp_path / "in.csv").write_text(text)
    out = tmp_path / "preds.csv"
    result = run_cli(
        "infer",
        str(COMMITTED_ONNX),
        str(tmp_path / "in.csv"),
        "--output",
        str(out),
        "--keep-columns",
        "id",
        "--on-error",
        "skip",
        "--allow-nan",
    )
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "wrote 3 predictions" in stderr and "skipped 2 bad rows" in stderr
    assert pacsv.read_csv(out).to_pydict()["id"] == ["a", "c", "e"]  # e: empty allowed
    listed = pacsv.read_csv(tmp_path / "preds.rejected.csv").to_pydict()
    assert listed["number"] == [3, 5] and listed["unit"] == ["line", "line"]
    assert listed["reason"] == [
        "column 'glucose': expected a number, got 'high'",
        "column 'age': expected a number, got 1e+39, outside float32 range",
    ]
    refused = run_cli(
        "infer", str(COMMITTED_ONNX), str(tmp_path / "in.csv"), "--output", str(tmp_path / "x.csv")
    )
    assert refused.returncode == 2
    assert "line 3, column 'glucose': expected a number, got 'high'" in refused.stderr.decode()
    no_output = run_cli(
        "infer", str(COMMITTED_ONNX), str(tmp_path / "in.csv"), "--on-error", "skip"
    )
    assert no_output.returncode == 2 and "expected --output FILE" in no_output.stderr.decode()
