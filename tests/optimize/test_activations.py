"""Means of intermediate tensors on the committed Pima MLP and real Pima rows."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from portanet.optimize.activations import Reader, batches, means
from tests.helpers import COMMITTED_ONNX, SHARED, real_file


def _rows() -> np.ndarray:
    table = np.genfromtxt(
        real_file(SHARED / "pima-indians-diabetes.csv"), delimiter=",", skip_header=1
    )
    return table[:, :8].astype(np.float32)


def test_means_of_the_input_and_of_a_layer_match_numpy():
    """The graph input's mean is read from the rows; the first matrix product's output mean
    equals numpy's, computed from the model's own weights, per output column."""
    model = onnx.load(str(COMMITTED_ONNX))
    name = model.graph.input[0].name
    features = _rows()[:200]
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    nodes = list(model.graph.node)
    sub, mul, matmul = nodes[0], nodes[1], nodes[2]
    assert (sub.op_type, mul.op_type, matmul.op_type) == ("Sub", "Mul", "MatMul")
    got = means(model, {name: features}, [name, matmul.output[0]], keep=lambda n, rank: (rank - 1,))
    np.testing.assert_allclose(got[name], features.astype(np.float64).mean(axis=0), rtol=1e-6)
    normal = (features - inits[sub.input[1]]) * inits[mul.input[1]]
    want = (normal @ inits[matmul.input[1]]).mean(axis=0)
    np.testing.assert_allclose(got[matmul.output[0]], want, rtol=1e-4, atol=1e-5)


def test_batches_and_the_reader_cover_every_row_once():
    rows = {"x": np.arange(20, dtype=np.float32)[:, None]}
    assert [len(b["x"]) for b in batches(rows, 8)] == [8, 8]  # whole batches only
    assert [len(b["x"]) for b in batches({"x": rows["x"][:5]}, 8)] == [5]
    reader = Reader(rows, 6)
    assert np.concatenate([b["x"] for b in reader])[:, 0].tolist() == list(range(20))
    reader.set_range(6, 14)
    assert [reader.get_next()["x"][:, 0].tolist() for _ in range(2)] == [
        list(range(6, 12)),
        [12.0, 13.0],
    ]
    assert reader.get_next() is None
