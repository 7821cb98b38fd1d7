"""Models under 2 GB with large weights: traced as graph inputs, converted as a small graph, put
back as initializers by onnxruntime's clean-up — one self-contained ``.onnx``, the same graph and
the same results as converting them as constants; recurrent layers keep their native operator;
the layerwise comparison keeps the old path."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from portanet.export.keras.load import from_model, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

from portanet.export import export_model  # noqa: E402
from portanet.export.convert.external import EXTERNAL_MIN_BYTES, INPUT_PREFIX  # noqa: E402
from portanet.export.convert.keras_to_onnx import convert, weight_bytes  # noqa: E402
from portanet.export.convert.lifted import (  # noqa: E402
    lifted_for,
    lifted_weights,
    recurrent_variables,
)
from portanet.export.preflight import estimate_peak  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")
layers = keras.layers


def _cnn(library: Any = keras) -> Any:
    """Conv2D kernels of 36 KB and 1.2 MB, a 1.2 MB Dense kernel, BatchNormalization between,
    built with ``library`` (Keras 3, or the ``tf_keras`` module)."""
    k = library.layers
    inputs = library.Input((8, 8, 16), name="pixels")
    x = k.Conv2D(64, 3, padding="same", name="small_conv")(inputs)
    x = k.BatchNormalization(name="norm")(x)
    x = k.Conv2D(512, 3, activation="relu", name="large_conv")(x)
    x = k.GlobalAveragePooling2D()(x)
    x = k.Dense(600, activation="relu", name="large_dense")(x)
    return library.Model(inputs, k.Dense(3, name="score")(x), name="cnn")


def _lstm() -> keras.Model:
    """An LSTM with a 1 MiB kernel, then a 1.2 MB Dense kernel."""
    inputs = keras.Input((5, 256), name="steps")
    x = layers.LSTM(256, name="recurrent")(inputs)
    x = layers.Dense(1200, name="large_dense")(x)
    return keras.Model(inputs, layers.Dense(2, name="score")(x), name="seq")


def _weights_feeding(proto: onnx.ModelProto, ops: set[str]) -> list[str]:
    initializers = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type in ops and n.input[0] in initializers]


def test_the_large_variables_are_lifted_and_recurrent_ones_are_not():
    cnn = _cnn()
    chosen = lifted_weights(cnn)
    assert chosen is not None
    assert [v.path for v in chosen.variables] == ["large_conv/kernel", "large_dense/kernel"]
    assert chosen.names == [
        f"{INPUT_PREFIX}0_large_conv_kernel",
        f"{INPUT_PREFIX}1_large_dense_kernel",
    ]
    assert all(v.numpy().nbytes >= EXTERNAL_MIN_BYTES for v in chosen.variables)
    sequence = _lstm()
    kernel = sequence.get_layer("recurrent").cell.kernel
    assert kernel.numpy().nbytes >= EXTERNAL_MIN_BYTES
    assert id(kernel) in recurrent_variables(sequence)
    lstm_lifted = lifted_weights(sequence)
    assert lstm_lifted is not None
    assert [v.path for v in lstm_lifted.variables] == ["large_dense/kernel"]
    small = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    assert lifted_weights(small) is None
    loaded = from_model(cnn)
    assert lifted_for(loaded, "tf2onnx") is None  # tf2onnx's clean-up keeps the constants
    assert lifted_for(loaded, "onnxruntime", lift_weights=False) is None
    assert lifted_for(loaded, "onnxruntime") is not None


def test_a_tf_keras_model_is_lifted_too_into_one_self_contained_file(tmp_path):
    """tf-keras has no stateless call: the model is frozen around its large variables
    (portanet/export/convert/unfrozen.py), then the weights are put back the same way."""
    import tf_keras

    model = _cnn(tf_keras)
    chosen = lifted_weights(model)
    assert [v.name for v in chosen.variables] == ["large_conv/kernel:0", "large_dense/kernel:0"]
    target = tmp_path / "cnn.onnx"
    result = export_model(model, target)
    assert result.report.passed and result.report.max_abs < 1e-5
    assert result.memory_estimate == estimate_peak(
        weight_bytes(model), "onnxruntime", lifted=chosen.nbytes
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx"] and result.data is None
    proto = onnx.load(str(target), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["pixels"]
    assert f"{INPUT_PREFIX}1_large_dense_kernel_0" in {t.name for t in proto.graph.initializer}
    assert not _weights_feeding(proto, {"Transpose", "Reshape"})  # folded into the kernels
    constant = convert(from_model(model), cleanup="onnxruntime", lift_weights=False).proto
    assert not any(t.name.startswith(INPUT_PREFIX) for t in constant.graph.initializer)
    assert sorted(n.op_type for n in proto.graph.node) == sorted(
        n.op_type for n in constant.graph.node
    )
    x = np.random.default_rng(3).uniform(-1, 1, (6, 8, 8, 16)).astype(np.float32)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"pixels": x})[0] - model(x).numpy()).max() < 1e-5


def test_a_lifted_cnn_is_one_clean_self_contained_file_with_exact_parity(tmp_path):
    model = _cnn()
    target = tmp_path / "cnn.onnx"
    result = export_model(model, target)
    assert result.report.passed and result.report.max_abs < 1e-5
    lifted_bytes = sum(v.numpy().nbytes for v in lifted_weights(model).variables)
    assert result.memory_estimate == estimate_peak(
        weight_bytes(model), "onnxruntime", lifted=lifted_bytes
    )  # the preflight counts the lifted weights at their own factor
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx"] and result.data is None
    proto = onnx.load(str(target), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["pixels"]
    names = {t.name for t in proto.graph.initializer}
    assert f"{INPUT_PREFIX}1_large_dense_kernel" in names  # MatMul reads it as it was
    assert not _weights_feeding(proto, {"Transpose", "Reshape"})  # folded into the kernels
    onnx.checker.check_model(proto, full_check=True)

    # The same graph and the same numbers as converting the weights as constants.
    lifted = convert(from_model(model), cleanup="onnxruntime").proto
    constant = convert(from_model(model), cleanup="onnxruntime", lift_weights=False).proto
    assert sorted(n.op_type for n in lifted.graph.node) == sorted(
        n.op_type for n in constant.graph.node
    )
    x = np.random.default_rng(3).uniform(-1, 1, (6, 8, 8, 16)).astype(np.float32)
    outputs = [
        ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"pixels": x}
        )[0]
        for p in (lifted, constant)
    ]
    assert np.abs(outputs[0] - outputs[1]).max() <= 1e-6
    assert np.abs(outputs[0] - np.asarray(model(x))).max() < 1e-5


def test_an_lstm_keeps_its_native_operator_beside_a_lifted_dense(tmp_path):
    model = _lstm()
    result = export_model(model, tmp_path / "seq.onnx")
    assert result.report.passed and result.report.max_abs < 1e-5
    proto = onnx.load(str(tmp_path / "seq.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert "LSTM" in ops and "Loop" not in ops
    assert f"{INPUT_PREFIX}0_large_dense_kernel" in {t.name for t in proto.graph.initializer}
    assert [i.name for i in proto.graph.input] == ["steps"]


@pytest.mark.parametrize("cleanup", ["auto", "onnxruntime"])
def test_layerwise_keeps_the_weights_in_the_graph_and_finds_every_layer(tmp_path, cleanup):
    model = _cnn()
    result = export_model(model, tmp_path / "cnn.onnx", layerwise=True, cleanup=cleanup)
    assert result.report.passed
    table = result.report.layerwise
    assert table.rows and all(row.passed for row in table.rows)
    if cleanup == "auto":  # tf2onnx's clean-up: TensorFlow's names, every layer found
        assert {"large_conv", "large_dense"} <= {row.layer for row in table.rows}
    proto = onnx.load(str(tmp_path / "cnn.onnx"))
    assert not any(t.name.startswith(INPUT_PREFIX) for t in proto.graph.initializer)


def test_every_kind_of_kernel_converts_as_an_input(tmp_path, monkeypatch):
    """With every variable lifted (the threshold at one byte): Conv2D, DepthwiseConv2D, a
    grouped Conv2D (ConvNeXt's kind, under XLA's jit_compile), BatchNormalization,
    LayerNormalization and Dense kernels all convert as graph inputs, and onnxruntime folds what
    tf2onnx put on them."""
    import portanet.export.convert.lifted as lifted_module

    monkeypatch.setattr(lifted_module, "EXTERNAL_MIN_BYTES", 1)
    inputs = keras.Input((12, 12, 8), name="pixels")
    x = layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="batch_norm")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers.Conv2D(16, 3, groups=4, padding="same", name="grouped")(x)
    x = layers.LayerNormalization(name="layer_norm")(x)
    x = layers.Dense(8, activation="gelu", name="pointwise")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, name="score")(x), name="kinds")
    chosen = lifted_weights(model)
    assert chosen is not None and len(chosen.variables) == len(model.weights)
    result = export_model(model, tmp_path / "kinds.onnx")
    assert result.report.passed and result.report.max_abs < 1e-5
    proto = onnx.load(str(tmp_path / "kinds.onnx"))
    assert [i.name for i in proto.graph.input] == ["pixels"]
    assert not _weights_feeding(proto, {"Transpose", "Reshape"})
    ops = {n.op_type for n in proto.graph.node}
    assert "Conv" in ops and {
        a.i for n in proto.graph.node for a in n.attribute if a.name == "group"
    } >= {4, 16}
