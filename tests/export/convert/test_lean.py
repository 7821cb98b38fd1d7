"""The lean conversion: no whole-graph copies, the graph cleaned by onnxruntime, parity kept."""

import copy

import numpy as np
import onnxruntime as ort
import pytest

from portanet.export.keras.load import from_model, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

from portanet.export.convert.keras_to_onnx import convert  # noqa: E402


def _conv_net() -> keras.Model:
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(8, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name="convnet")


def test_conversion_copies_no_graph_and_leaves_no_layout_transposes(monkeypatch):
    import tf2onnx.optimizer
    from tf2onnx.graph import Graph

    real = copy.deepcopy

    def refuse(value, *args, **kwargs):
        if isinstance(value, Graph):
            raise AssertionError("tf2onnx copied the whole graph")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(tf2onnx.optimizer.copy, "deepcopy", refuse)
    model = _conv_net()
    converted = convert(from_model(model), cleanup="onnxruntime")
    monkeypatch.setattr(tf2onnx.optimizer.copy, "deepcopy", real)
    ops = [n.op_type for n in converted.proto.graph.node]
    # tf2onnx wraps each of the 3 convolutions in NHWC<->NCHW transposes; onnxruntime's
    # transpose optimizer leaves one at the input at most.
    assert ops.count("Transpose") <= 1 and ops.count("Conv") == 3
    assert "BatchNormalization" not in ops and "Identity" not in ops  # fused / removed
    assert converted.external is None and converted.trace is not None
    x = np.random.default_rng(0).normal(size=(5, 16, 16, 3)).astype(np.float32)
    session = ort.InferenceSession(
        converted.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-6)


@pytest.mark.parametrize("opset", [13, 17])
def test_converted_graphs_use_only_standard_operators(opset):
    from portanet.export.convert.cleanup import non_standard_ops

    converted = convert(from_model(_conv_net()), opset=opset, cleanup="onnxruntime")
    assert non_standard_ops(converted.proto) == []
    assert converted.proto.opset_import[0].version == opset


def test_tf2onnx_cleanup_copies_no_graph_and_keeps_tensorflow_names(monkeypatch):
    import tf2onnx.optimizer
    from tf2onnx.graph import Graph

    real = copy.deepcopy

    def refuse(value, *args, **kwargs):
        if isinstance(value, Graph):
            raise AssertionError("tf2onnx copied the whole graph")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(tf2onnx.optimizer.copy, "deepcopy", refuse)
    model = _conv_net()
    converted = convert(from_model(model))  # the default: tf2onnx's optimizers, no copies
    monkeypatch.setattr(tf2onnx.optimizer.copy, "deepcopy", real)
    outputs = {o for n in converted.proto.graph.node for o in n.output}
    relu = next(t for t in outputs if "re_lu" in t and "Relu" in t)
    assert relu.endswith(":0")  # TensorFlow's tensor name: what the layerwise table looks up
    ops = [n.op_type for n in converted.proto.graph.node]
    assert ops.count("Transpose") <= 1 and ops.count("Conv") == 3
