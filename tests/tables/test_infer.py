"""`portanet infer` and infer_file: every format in and out, streaming, stdin, kept columns."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import portanet
from portanet.errors import InputError
from portanet.reference.data import PIMA_FEATURES, load_pima
from portanet.tables.infer import infer_file
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
