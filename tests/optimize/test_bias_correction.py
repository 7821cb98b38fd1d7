"""Bias correction on real exported models: the digits CNN (convolutions, 'same' padding) and
the committed Pima MLP (matrix products), quantized by onnxruntime's own quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from portanet.optimize import activations
from portanet.optimize import bias_correction as bc
from portanet.optimize.int8 import quantize
from portanet.optimize.quiet import quiet
from tests.helpers import COMMITTED_ONNX, SHARED, real_file


def _pre(source: Path, folder: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = folder / "pre.onnx"
    with quiet():
        quant_pre_process(str(source), str(target))
    return target


def _quantized(
    pre: Path, target: Path, rows: dict[str, np.ndarray], cache: Path
) -> onnx.ModelProto:
    quantize(
        pre,
        target,
        method="MinMax",
        calibration=rows,
        cache=cache,
        reduce_range=False,
        per_channel=True,
    )
    return onnx.load(str(target))


def _run(
    model: onnx.ModelProto, rows: dict[str, np.ndarray], tensors: list[str]
) -> list[np.ndarray]:
    copy = activations.exposing(model, tensors)
    session = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(tensors, rows)


def _with_weight(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    init = next(i for i in copy.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return copy


def _bias(model: onnx.ModelProto, layer: bc.Layer) -> np.ndarray:
    init = next(i for i in model.graph.initializer if i.name == layer.bias)
    return numpy_helper.to_array(init).astype(np.float64).reshape(-1)


@pytest.fixture(scope="module")
def digits_int8(digits, tmp_path_factory):
    """The digits CNN pre-processed and quantized (min-max, per-channel), its rows in the ONNX
    layout: 128 calibrate, the rest are held out."""
    import portanet
    from portanet.optimize.data import load_rows

    folder = tmp_path_factory.mktemp("bias")
    pre = _pre(digits.onnx_path, folder)
    feeds = load_rows(digits.rows_path, portanet.load(digits.onnx_path))
    rows = {k: v[:128] for k, v in feeds.items()}
    held = {k: v[128:] for k, v in feeds.items()}
    cache = folder / "ranges.json"
    qdq = _quantized(pre, folder / "int8.onnx", rows, cache)
    return folder, pre, onnx.load(str(pre)), qdq, rows, held, cache


def test_the_quantizer_weights_are_read_back_exactly(digits_int8):
    """The dequantized weights equal onnxruntime's own per-channel symmetric int8 quantization
    of the float weights (its quantize_data, one scale per output channel)."""
    from onnxruntime.quantization.quant_utils import QuantType, quantize_data

    _, _, model, qdq, *_ = digits_int8
    found = bc.layers(model)
    weights = bc.dequantized_weights(qdq, [x.node for x in found])
    assert {x.op for x in found} >= {"Conv"} and set(weights) == {
        x.node for x in found if x.node in weights
    }
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = 0
    for layer in found:
        if layer.node not in weights or layer.op != "Conv":
            continue
        w = inits[layer.weight]
        for channel in range(w.shape[0]):
            zero, scale, q = quantize_data(w[channel].ravel(), QuantType.QInt8.tensor_type, True)
            want = ((q.astype(np.float32) - zero) * np.float32(scale)).reshape(w[channel].shape)
            np.testing.assert_array_equal(weights[layer.node][channel], want)
        checked += 1
    assert checked == 2  # both convolutions of the digits CNN


def test_each_shift_is_the_measured_error_of_its_weights_alone(digits_int8):
    """For every quantized layer, the analytic shift equals the mean output error measured with
    only that layer's weights replaced by their int8 values (padding included)."""
    _, _, model, qdq, rows, *_ = digits_int8
    fixes = bc.analytic_shifts(model, qdq, rows)
    found = {x.node: x for x in bc.layers(model)}
    weights = bc.dequantized_weights(qdq, list(found))
    nodes = {n.name: n for n in model.graph.node}
    assert [f.node for f in fixes] == [n for n in found if n in weights] and len(fixes) >= 3
    for fix in fixes:
        layer = found[fix.node]
        out = nodes[layer.biased_node].output[0]
        (want,) = _run(model, rows, [out])
        (got,) = _run(_with_weight(model, layer.weight, weights[layer.node]), rows, [out])
        axes = (0, 2, 3) if layer.op == "Conv" else tuple(range(want.ndim - 1))
        measured = (got.astype(np.float64) - want).mean(axis=axes)
        np.testing.assert_allclose(fix.shift, measured, rtol=1e-3, atol=1e-6)
        assert np.abs(fix.shift).max() > 0


def test_the_correction_moves_each_bias_and_lowers_the_error_on_held_out_rows(digits_int8):
    folder, pre, model, qdq, rows, held, cache = digits_int8
    fixes = bc.analytic_shifts(model, qdq, rows)
    fixed = bc.corrected(model, fixes)
    found = {x.node: x for x in bc.layers(model)}
    for fix in fixes:
        layer = found[fix.node]
        np.testing.assert_allclose(
            _bias(fixed, layer), _bias(model, layer) - fix.shift, rtol=0, atol=1e-6
        )
    # Quantized again from the same ranges: the same int8 weights, the corrected biases.
    again = _quantized(
        bc.save(fixed, folder / "pre.fixed.onnx"), folder / "fixed.onnx", rows, cache
    )
    names = [f.node for f in fixes]
    before, after = bc.dequantized_weights(qdq, names), bc.dequantized_weights(again, names)
    assert all(np.array_equal(before[n], after[n]) for n in names)
    # On rows calibration never saw, the weights-only error of every layer's mean output is
    # lower with the corrected biases.
    weights_only, weights_fixed = model, fixed
    for layer in (found[n] for n in names):
        weights_only = _with_weight(weights_only, layer.weight, before[layer.node])
        weights_fixed = _with_weight(weights_fixed, layer.weight, before[layer.node])
    nodes = {n.name: n for n in model.graph.node}
    outs = [nodes[found[n].biased_node].output[0] for n in names]
    want = _run(model, held, outs)
    plain = _run(weights_only, held, outs)
    better = _run(weights_fixed, held, outs)
    for name, w, p, b in zip(outs, want, plain, better, strict=True):
        axes = (0, 2, 3) if w.ndim == 4 else (0,)
        bias_plain = np.abs((p.astype(np.float64) - w).mean(axis=axes)).mean()
        bias_fixed = np.abs((b.astype(np.float64) - w).mean(axis=axes)).mean()
        assert bias_fixed < bias_plain, (name, bias_fixed, bias_plain)


def test_matrix_products_of_the_committed_pima_mlp(tmp_path):
    """The committed Pima MLP: each matrix product's bias (its Gemm's or its Add's) absorbs
    ``E[x] · (W_q − W)`` measured on real rows."""
    table = np.genfromtxt(
        real_file(SHARED / "pima-indians-diabetes.csv"), delimiter=",", skip_header=1
    )
    features = table[:, :8].astype(np.float32)
    pre = _pre(COMMITTED_ONNX, tmp_path)
    model = onnx.load(str(pre))
    name = model.graph.input[0].name
    rows, held = {name: features[:256]}, {name: features[256:]}
    qdq = _quantized(pre, tmp_path / "int8.onnx", rows, tmp_path / "ranges.json")
    fixes = bc.analytic_shifts(model, qdq, rows)
    found = {x.node: x for x in bc.layers(model)}
    assert fixes and {found[f.node].op for f in fixes} <= {"Gemm", "MatMul"}
    nodes = {n.name: n for n in model.graph.node}
    weights = bc.dequantized_weights(qdq, [f.node for f in fixes])
    for fix in fixes:
        layer = found[fix.node]
        (x,) = _run(model, rows, [layer.input])
        w = numpy_helper.to_array(
            next(i for i in model.graph.initializer if i.name == layer.weight)
        ).astype(np.float64)
        error = weights[layer.node] - w
        if layer.op == "Gemm" and any(
            a.name == "transB" and a.i for a in nodes[layer.node].attribute
        ):
            error = error.T
        want = layer.alpha * x.astype(np.float64).mean(axis=0) @ error / layer.beta
        np.testing.assert_allclose(fix.shift, want, rtol=1e-6, atol=1e-9)
    fixed = bc.corrected(model, fixes)
    out = model.graph.output[0].name
    (ref,) = _run(model, held, [out])
    with_w = [model, fixed]
    for i, m in enumerate(with_w):
        for fix in fixes:
            m = _with_weight(m, found[fix.node].weight, weights[fix.node])
        with_w[i] = m
    (plain,) = _run(with_w[0], held, [out])
    (better,) = _run(with_w[1], held, [out])
    assert abs(float((better - ref).mean())) < abs(float((plain - ref).mean()))


def test_sequential_correction_removes_each_layers_mean_error_in_turn(digits_int8):
    """Layer by layer: the first layer's shift is the int8 model's own mean error there, and
    after the correction the int8 model's mean error of every corrected layer is smaller on
    held-out rows than without it."""
    folder, pre, model, qdq, rows, held, cache = digits_int8

    def requantize(float_model: onnx.ModelProto) -> onnx.ModelProto:
        source = bc.save(float_model, folder / "pre.step.onnx")
        return _quantized(source, folder / "step.onnx", rows, cache)

    fixed, fixes = bc.sequential_shifts(model, requantize, rows)
    found = {x.node: x for x in bc.layers(model)}
    nodes = {n.name: n for n in model.graph.node}
    qdq_nodes = {n.name: n for n in qdq.graph.node}
    first = found[fixes[0].node]
    (want,) = _run(model, rows, [nodes[first.biased_node].output[0]])
    (got,) = _run(qdq, rows, [qdq_nodes[first.biased_node].output[0]])
    axes = (0, 2, 3) if got.ndim == 4 else (0,)
    np.testing.assert_allclose(
        fixes[0].shift, (got.astype(np.float64) - want).mean(axis=axes), rtol=1e-4, atol=1e-7
    )
    again = _quantized(bc.save(fixed, folder / "pre.seq.onnx"), folder / "seq.onnx", rows, cache)
    plain_errors, fixed_errors = [], []
    for fix in fixes:
        node = found[fix.node].biased_node
        (w,) = _run(model, held, [nodes[node].output[0]])
        (p,) = _run(qdq, held, [qdq_nodes[node].output[0]])
        (b,) = _run(again, held, [next(n for n in again.graph.node if n.name == node).output[0]])
        axes = (0, 2, 3) if w.ndim == 4 else (0,)
        plain_errors.append(np.abs((p.astype(np.float64) - w).mean(axis=axes)).mean())
        fixed_errors.append(np.abs((b.astype(np.float64) - w).mean(axis=axes)).mean())
    assert np.mean(fixed_errors) < np.mean(plain_errors), (fixed_errors, plain_errors)
