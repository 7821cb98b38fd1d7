import numpy as np
import pyarrow as pa
import pytest

import portanet
from portanet.errors import InputError, ModelLoadError
from portanet.reference.data import PIMA_FEATURES, load_pima
from tests.helpers import COMMITTED_ONNX


@pytest.fixture(scope="module")
def model():
    return portanet.load(COMMITTED_ONNX)


@pytest.fixture(scope="module")
def rows():
    return load_pima().features[:20]


@pytest.fixture(scope="module")
def raw():
    """The independent reference: a plain onnxruntime session on the same file."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(COMMITTED_ONNX), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"features": np.asarray(x, dtype=np.float32)})[0]


def test_schema_and_providers(model):
    assert model.input_names == ["features"] and model.output_names == ["probability"]
    assert model.feature_names == PIMA_FEATURES
    assert model.schema.task == "binary_classifier" and model.schema.threshold == 0.5
    assert model.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    "shape",
    ["array", "float64", "int", "list", "dict", "shuffled-dict", "arrow-table", "single-row"],
)
def test_every_input_form_gives_the_same_predictions(model, rows, raw, shape):
    expected = raw(rows)
    columns = {n: rows[:, i] for i, n in enumerate(PIMA_FEATURES)}
    x = {
        "array": rows,
        "float64": rows.astype(np.float64),
        "list": rows.tolist(),
        "int": np.round(rows).astype(np.int64),
        "dict": columns,
        "shuffled-dict": dict(reversed(list(columns.items()))),
        "arrow-table": pa.table(columns),
        "single-row": rows[0].tolist(),
    }[shape]
    got = model.predict(x)
    if shape == "int":
        expected = raw(np.round(rows))
    if shape == "single-row":
        expected = expected[:1]
    assert np.allclose(got, expected, atol=1e-7)


def test_large_batches_are_chunked_into_one_output(rows, raw):
    model = portanet.load(COMMITTED_ONNX)
    model.chunk_rows = 7
    x = np.tile(rows, (5, 1)) + np.arange(100, dtype=np.float32)[:, None]  # every row distinct
    assert np.array_equal(model.predict(x), raw(x))


def test_labels_follow_the_threshold(model, rows):
    p = model.predict(rows)
    assert np.array_equal(model.labels_for(p), (p[:, 0] >= 0.5).astype(np.int64))


def test_empty_batch_gives_empty_result(model):
    assert model.predict(np.empty((0, 8), dtype=np.float32)).shape == (0, 1)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 7)), "expected size 8 on axis 1"),
        (np.zeros((2, 8, 1)), "expected 2 dimensions"),
        ([["a"] * 8], "expected numbers"),
        (np.array([[1.0] * 7 + [np.nan]]), "expected finite numbers, got NaN in row 0"),
        ({"glucose": [1.0]}, "missing"),
        ({**{n: [1.0] for n in PIMA_FEATURES}, "outcome": [1.0]}, "unknown"),
    ],
    ids=["width", "rank", "strings", "nan", "missing-column", "unknown-column"],
)
def test_bad_input_is_an_input_error(model, x, message):
    with pytest.raises(InputError, match=message):
        model.predict(x)


def test_allow_nan_passes_nan_through(model):
    out = model.predict(np.full((1, 8), np.nan, dtype=np.float32), allow_nan=True)
    assert np.isnan(out).all()


def test_loading_bad_files_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        portanet.load(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        portanet.load(junk)


def test_pandas_dataframe_in_any_column_order(model, rows, raw):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({n: rows[:, i] for i, n in enumerate(PIMA_FEATURES)})
    frame = frame[list(reversed(PIMA_FEATURES))]
    assert np.array_equal(model.predict(frame), raw(rows))


def test_run_returns_every_output_by_name(model, rows):
    out = model.run(rows)
    assert list(out) == ["probability"] and out["probability"].shape == (20, 1)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.array([[1, 2, 3, 4, 5, 6, 7, np.inf]]), "got inf in row 0"),
        (np.vstack([np.ones((5, 8)), [[np.nan] * 8]]), "in row 5"),
        (np.array([["1"] * 8], dtype=object), None),
        (np.array([[object()] * 8], dtype=object), "expected numbers"),
        ({"features": np.ones((2, 9))}, "expected size 8"),
        ({n: ["x"] for n in PIMA_FEATURES}, "column 'pregnancies'"),
        (np.ones((2, 8), dtype=np.complex64), "expected numbers"),
    ],
    ids=[
        "inf",
        "nan-later-row",
        "numeric-strings-in-objects",
        "objects",
        "dict-by-input-name",
        "string-column",
        "complex",
    ],
)
def test_validation_table(model, x, message):
    if message is None:
        assert model.predict(x).shape == (1, 1)
        return
    with pytest.raises(InputError, match=message):
        model.predict(x)


def test_nan_found_in_a_later_chunk_names_the_global_row():
    model = portanet.load(COMMITTED_ONNX)
    model.chunk_rows = 4
    x = np.ones((10, 8), dtype=np.float32)
    x[9, 3] = np.nan
    with pytest.raises(InputError, match="in row 9"):
        model.predict(x)


def test_strict_provider_raises_and_fallback_warns(caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this test proves the CPU-only fallback")
    with pytest.raises(ModelLoadError, match="expected provider CUDAExecutionProvider"):
        portanet.load(COMMITTED_ONNX, providers="cuda", strict=True)
    with caplog.at_level("WARNING", logger="portanet"):
        model = portanet.load(COMMITTED_ONNX, providers="cuda")
    assert model.providers == ["CPUExecutionProvider"]
    assert "expected provider CUDAExecutionProvider" in caplog.text


def test_auto_and_explicit_cpu_and_bad_names():
    assert portanet.load(COMMITTED_ONNX, providers="auto").providers[0] == "CPUExecutionProvider"
    assert portanet.load(COMMITTED_ONNX, providers=["cpu"]).providers == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="provider"):
        portanet.load(COMMITTED_ONNX, providers="gpu-please")


@pytest.mark.parametrize("chunk_rows", [65536, 100], ids=["one-call", "chunked"])
def test_sixteen_threads_match_serial(chunk_rows, raw):
    """16 threads × 500 predictions of random batch sizes (1–512) on one shared Model equal a
    plain onnxruntime session's results, with batches run in one call or cut into chunks."""
    from concurrent.futures import ThreadPoolExecutor

    model = portanet.load(COMMITTED_ONNX)
    model.chunk_rows = chunk_rows
    rng = np.random.default_rng(0)
    batches = [
        rng.uniform(0, 100, size=(int(rng.integers(1, 513)), 8)).astype(np.float32)
        for _ in range(16 * 500)
    ]
    serial = [raw(b) for b in batches]
    with ThreadPoolExecutor(16) as pool:
        parallel = list(pool.map(model.predict, batches))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_bytes_and_threads_options():
    model = portanet.load(COMMITTED_ONNX.read_bytes(), threads=1)
    assert model.path is None and model.predict(np.ones((1, 8))).shape == (1, 1)
