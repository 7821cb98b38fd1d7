"""The execution path: bound buffers per thread, chunks sized by bytes, fixed-batch models.

Every result is compared with a plain onnxruntime session run on the same rows (an independent
reference), never with portanet itself.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import portanet
from portanet.errors import InputError
from portanet.runtime.execution import (
    CACHE_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_WORKERS,
    MIN_CHUNK_ROWS,
    chunk_rows_for,
    is_small_row,
)
from tests.helpers import COMMITTED_ONNX, REPO

onnx = pytest.importorskip("onnx")


def reference(path: Path | str, x: np.ndarray) -> np.ndarray:
    """A dynamic-batch model's output from a plain onnxruntime session, row by row."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 150, size=(count, 8)).astype(np.float32)


@pytest.fixture(scope="module", params=[1, 4], ids=["batch1", "batch4"])
def fixed(request, tmp_path_factory) -> tuple[Path, int]:
    """The committed Pima model with its batch dimension fixed, as `export --batch-size N`
    writes it (input [N, 8], output [N, 1])."""
    batch = request.param
    model = onnx.load(str(COMMITTED_ONNX))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path_factory.mktemp("fixed") / f"pima_batch{batch}.onnx"
    onnx.save(model, str(path))
    return path, batch


@pytest.mark.parametrize("count", [0, 1, 3, 4, 10, 33])
def test_fixed_batch_models_take_any_number_of_rows(fixed, count):
    path, batch = fixed
    model = portanet.load(path)
    assert model.fixed_batch == batch and model.schema.inputs[0].shape == (batch, 8)
    x = rows(count, seed=count)
    got = model.predict(x)
    assert got.shape == (count, 1)
    if count:
        # The committed model has the same weights and a dynamic batch: the reference.
        assert np.allclose(got, reference(COMMITTED_ONNX, x), rtol=1e-6, atol=1e-7)
        assert np.allclose(model.predict(x.tolist()), got)  # the coerced path too


def test_fixed_batch_names_the_global_row_of_a_nan(fixed):
    path, _ = fixed
    x = rows(10)
    x[9, 2] = np.nan
    with pytest.raises(InputError, match="got NaN in row 9"):
        portanet.load(path).predict(x)


def test_fixed_batch_still_checks_the_other_dimensions(fixed):
    path, _ = fixed
    with pytest.raises(InputError, match="expected size 8 on axis 1"):
        portanet.load(path).predict(np.ones((3, 7), dtype=np.float32))


def test_chunk_rows_follow_the_bytes_a_row_weighs():
    assert chunk_rows_for(8 * 4) == 16384  # Pima rows stay in the caches
    image = 224 * 224 * 3 * 4
    assert chunk_rows_for(image) * image <= MAX_CHUNK_BYTES
    assert chunk_rows_for(MAX_CHUNK_BYTES * 2) == 1  # one huge row still runs


@pytest.mark.parametrize("count", [1, 2, 16383, 16384, 16385, 40000])
def test_chunked_batches_equal_one_plain_run(count):
    """Bytes-sized chunks (16,384 Pima rows) written straight into one output."""
    x = rows(count, seed=count)
    session = ort.InferenceSession(str(COMMITTED_ONNX), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"features": x})[0]
    got = portanet.load(COMMITTED_ONNX).predict(x)
    assert got.shape == expected.shape and np.allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_bound_buffers_return_fresh_arrays_and_recheck_nan():
    """A shape that comes back gets the thread's bound buffers (from its third call on): each
    result is a new array (an earlier result is never overwritten), and NaN is still refused."""
    model = portanet.load(COMMITTED_ONNX)
    a, b = rows(3, seed=1), rows(3, seed=2)
    first = model.predict(a)
    assert (3, 8) not in model._executor.slots.table  # seen once: not bound yet
    second = model.predict(b)
    assert (3, 8) in model._executor.slots.table
    third, fourth = model.predict(a), model.predict(b)  # the bound path
    assert np.array_equal(first, third) and np.array_equal(second, fourth)
    assert not np.array_equal(first, second) and third is not fourth
    assert np.allclose(fourth, reference(COMMITTED_ONNX, b), rtol=1e-6, atol=1e-7)
    bad = a.copy()
    bad[2, 5] = np.inf
    with pytest.raises(InputError, match="got inf in row 2"):
        model.predict(bad)
    assert np.isinf(bad).any() and model.predict(bad, allow_nan=True).shape == (3, 1)
    strided = np.asfortranarray(b)  # not C-contiguous: copied into the bound buffer
    assert np.array_equal(model.predict(strided), second)


def test_threads_use_their_own_bound_buffers():
    """8 threads × 300 calls of one shape on one Model (the bound path) equal the reference."""
    model = portanet.load(COMMITTED_ONNX)
    batches = [rows(2, seed=i) for i in range(8 * 300)]
    expected = reference(COMMITTED_ONNX, np.concatenate(batches)).reshape(-1, 2, 1)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(model.predict, batches))
    assert all(np.allclose(g, e, rtol=1e-6, atol=1e-7) for g, e in zip(got, expected, strict=True))


def _image_model(path: Path) -> None:
    """NHWC images → 1×1 conv to 8 channels → ReLU → global average pool: [batch, 8]. Its
    intermediates weigh about 2.7× the input, so one call on 1,024 images needs gigabytes."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(8, 3, 1, 1)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "images",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 224, 224, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_memory_is_bounded_by_bytes_not_rows(tmp_path):
    """1,024 images of 224×224×3 (616 MB of float32) in one predict call: chunks of 64 images
    (38.5 MB) keep the peak under 2 GiB (measured 1.3 GiB; one call on the whole batch peaks
    at 6.1 GiB). Peak RSS is the child process's own VmHWM."""
    model_path = tmp_path / "images.onnx"
    _image_model(model_path)
    script = textwrap.dedent(f"""
        import numpy as np, portanet
        model = portanet.load({str(model_path)!r}, threads=2)
        x = np.empty((1024, 224, 224, 3), dtype=np.float32)
        x[...] = np.arange(224 * 3, dtype=np.float32).reshape(1, 1, 224, 3) / 672
        x[::7] *= 0.5
        out = model.predict(x)
        np.save({str(tmp_path / "out.npy")!r}, out)
        np.save({str(tmp_path / "x.npy")!r}, x[[0, 7, 512, 1023]])
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        print(int(hwm.split()[1]) // 1024)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mib = int(done.stdout.split()[-1])
    assert 616 < peak_mib < 2048, peak_mib
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (1024, 8)
    expected = reference(model_path, np.load(tmp_path / "x.npy"))
    assert np.allclose(out[[0, 7, 512, 1023]], expected, rtol=1e-5, atol=1e-6)


# -- small-row chunks side by side ---------------------------------------------------------------

CHUNK = chunk_rows_for(8 * 4)  # 16,384 Pima rows


def stock_run(x: np.ndarray, threads: int = 0) -> np.ndarray:
    """One raw run of the whole array on a stock session (default options: spinning on)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(COMMITTED_ONNX), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"features": x})[0]


def chunk_threads() -> set[threading.Thread]:
    """The live chunk threads (of every model: those of models gone may still be exiting)."""
    return {t for t in threading.enumerate() if t.name.startswith("portanet-chunks")}


def test_small_rows_are_rows_whose_cache_chunk_holds_more_than_the_fewest_rows():
    limit = CACHE_CHUNK_BYTES // MIN_CHUNK_ROWS  # 8 KiB
    assert is_small_row(8 * 4) and is_small_row(limit - 1)
    assert not is_small_row(limit) and not is_small_row(224 * 224 * 3 * 4)
    assert not is_small_row(0)


@pytest.mark.parametrize(
    ("threads", "workers"), [(1, 1), (2, 2), (3, 3), (MAX_CHUNK_WORKERS + 4, MAX_CHUNK_WORKERS)]
)
def test_chunk_threads_follow_the_session_threads_up_to_the_cap(threads, workers):
    assert portanet.load(COMMITTED_ONNX, threads=threads)._executor.chunk_workers == workers


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize(
    "count", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 7 * CHUNK + 5, 150_000]
)
def test_chunks_are_bit_identical_to_one_raw_run(count, threads):
    """Every chunk policy (one call, chunks one at a time, chunks side by side on 2 or 4
    threads) gives exactly the bytes one raw run of the whole array gives."""
    x = rows(count, seed=count)
    got = portanet.load(COMMITTED_ONNX, threads=threads).predict(x)
    assert got.dtype == np.float32 and np.array_equal(got, stock_run(x))


def test_side_by_side_only_for_small_rows_and_several_threads(tmp_path):
    """The chunk threads start for many small rows on a 2-thread session, never for one
    chunk's worth of rows, for a 1-thread session, for big rows (images: one chunk at a time,
    so that memory stays bounded by one chunk) or for chunks (set by hand) so big that two in
    flight would hold more than ``MAX_CHUNK_BYTES`` of input."""
    before = chunk_threads()
    portanet.load(COMMITTED_ONNX, threads=1).predict(rows(3 * CHUNK))
    portanet.load(COMMITTED_ONNX, threads=2).predict(rows(CHUNK))
    assert chunk_threads() <= before
    model_path = tmp_path / "images.onnx"
    _image_model(model_path)
    images = np.random.default_rng(1).random((3 * 64, 224, 224, 3), dtype=np.float32)
    image_model = portanet.load(model_path, threads=2)
    assert image_model._executor.chunk_workers == 2  # allowed, but images are not small rows
    out = image_model.predict(images)
    assert chunk_threads() <= before
    raw = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert np.array_equal(out, raw.run(None, {"images": images})[0])
    huge_chunks = portanet.load(COMMITTED_ONNX, threads=2)
    huge_chunks.chunk_rows = MAX_CHUNK_BYTES // 32 // 2 + 1  # two in flight: over the bound
    x = rows(3 * huge_chunks.chunk_rows)
    assert np.array_equal(huge_chunks.predict(x), stock_run(x))
    assert chunk_threads() <= before
    tabular = portanet.load(COMMITTED_ONNX, threads=2)
    tabular.predict(rows(3 * CHUNK))
    assert chunk_threads() - before  # the model (still alive) has its chunk thread


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("where", [0, CHUNK - 1, CHUNK, 3 * CHUNK + 17, 6 * CHUNK + 2])
def test_nan_is_refused_in_any_chunk_and_named_by_its_row(where, threads):
    model = portanet.load(COMMITTED_ONNX, threads=threads)
    x = rows(6 * CHUNK + 3, seed=where)
    x[where, 3] = np.nan
    with pytest.raises(InputError, match=rf"got NaN in row {where} "):
        model.predict(x)
    x[where, 3] = -np.inf
    with pytest.raises(InputError, match=rf"got -inf in row {where} "):
        model.predict(x)
    x[where, 3] = np.nan
    assert np.isnan(model.predict(x, allow_nan=True)).sum() <= 1


@pytest.mark.parametrize("threads", [2, 4])
def test_the_first_bad_row_is_named_when_several_chunks_hold_one(threads):
    """Chunks run side by side, yet the error is always the first bad row's (20 tries)."""
    model = portanet.load(COMMITTED_ONNX, threads=threads)
    x = rows(8 * CHUNK, seed=5)
    for late in (7 * CHUNK + 1, 5 * CHUNK, 3 * CHUNK + 9):
        x[late, 0] = np.inf
    x[2 * CHUNK + 11, 6] = np.nan
    for _ in range(20):
        with pytest.raises(InputError, match=rf"got NaN in row {2 * CHUNK + 11} "):
            model.predict(x)


def test_threads_sharing_a_model_each_get_their_own_large_batch():
    """4 threads × 3 large batches on one 2-thread Model (one shared pool of chunk threads)."""
    model = portanet.load(COMMITTED_ONNX, threads=2)
    batches = [rows(3 * CHUNK + i, seed=i) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(model.predict, batches))
    assert all(np.array_equal(g, stock_run(b)) for g, b in zip(got, batches, strict=True))


#: The model a forked child inherits (set by the parent just before the fork).
_FORKED: list[portanet.Model] = []


def _predict_in_child(x: np.ndarray, queue: multiprocessing.Queue) -> None:
    queue.put(_FORKED[0].predict(x))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_runs_large_batches_with_its_own_threads():
    """The chunk threads do not survive a fork: a child makes its own and gets the same bytes."""
    model = portanet.load(COMMITTED_ONNX, threads=2)
    x = rows(4 * CHUNK + 7, seed=9)
    expected = model.predict(x)  # the parent's chunk threads exist now
    _FORKED[:] = [model]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_predict_in_child, args=(x, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert np.array_equal(got, expected) and np.array_equal(got, stock_run(x))
