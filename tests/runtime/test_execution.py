"""The execution path: bound buffers per thread, chunks sized by bytes, fixed-batch models.

Every result is compared with a plain onnxruntime session run on the same rows (an independent
reference), never with portanet itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import portanet
from portanet.errors import InputError
from portanet.runtime.execution import MAX_CHUNK_BYTES, chunk_rows_for
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
