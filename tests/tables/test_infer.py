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
