"""portanet's tf2onnx extensions: op handlers, XLA inlining, log capture, unconverted ops."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from portanet.export.keras.load import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402

from portanet.export import export_model  # noqa: E402
from portanet.export.convert import tf2onnx_ext  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


class _Op(keras.layers.Layer):
    """Applies one TensorFlow function (the op under test) to its input mapped into (low, high)."""

    def __init__(self, function, low, high, **kwargs):
        super().__init__(**kwargs)
        self.function, self.low, self.high = function, low, high

    def call(self, inputs):
        return self.function(self.low + (self.high - self.low) * tf.sigmoid(inputs))


@pytest.mark.parametrize(
    "function, low, high, onnx_op",
    [
        (tf.math.erfc, -3.0, 3.0, "Erf"),
        (tf.math.expm1, -3.0, 3.0, "Exp"),
        (tf.math.log1p, -0.5, 3.0, "Log"),
        (lambda x: tf.nn.gelu(x, approximate=False), -4.0, 4.0, "Erf"),
    ],
    ids=["erfc", "expm1", "log1p", "gelu-exact"],
)
def test_handlers_convert_ops_tf2onnx_lacks(function, low, high, onnx_op, tmp_path):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(6)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(_Op(function, low, high, name="op")(hidden)))
    result = export_model(model, tmp_path / "op.onnx")
    assert result.report.passed and result.report.samples > 1000
    assert result.report.max_abs <= 1e-4
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert onnx_op in ops and not ops & {"Erfc", "Expm1", "Log1p"}


def test_handlers_are_registered_only_where_tf2onnx_has_none():
    from tf2onnx.handler import tf_op

    registry = tf_op.get_opsets()[""]
    for op in tf2onnx_ext.REGISTERED:
        owners = [by_name[op][0] for by_name in registry if op in by_name]
        assert [o.__self__ for o in owners] == [tf2onnx_ext.HANDLERS[op]]
    assert "Erf" not in tf2onnx_ext.REGISTERED  # tf2onnx converts Erf itself


def test_xla_markers_are_stripped_so_grouped_convolutions_inline(tmp_path):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    model = keras.Sequential(
        [keras.Input((12, 12, 8)), keras.layers.Conv2D(8, 7, padding="same", groups=8)]
    )
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, 12, 12, 8], tf.float32)
    )
    graph_def = convert_variables_to_constants_v2(
        concrete, lower_control_flow=False, aggressive_inlining=True
    ).graph.as_graph_def()
    assert tf2onnx_ext.strip_xla_markers(graph_def) >= 2
    assert tf2onnx_ext.strip_xla_markers(graph_def) == 0
    result = export_model(model, tmp_path / "grouped.onnx")
    convs = [n for n in onnx.load(str(result.path)).graph.node if n.op_type == "Conv"]
    assert [a.i for n in convs for a in n.attribute if a.name == "group"] == [8]


def test_captured_log_keeps_tf2onnx_quiet_and_collects_records(capfd):
    import logging

    logger = logging.getLogger("tf2onnx")
    before = (logger.propagate, logger.level, list(logger.handlers))
    with tf2onnx_ext.captured_log() as log:
        logging.getLogger("tf2onnx.tfonnx").error(
            "Tensorflow op [%s: %s] is not supported", "a/b", "Lgamma"
        )
        logging.getLogger("tf2onnx.tfonnx").error("Failed to convert node %r", "a/c")
    assert log.messages == [
        "Tensorflow op [a/b: Lgamma] is not supported",
        "Failed to convert node 'a/c'",
    ]
    assert log.failed_nodes == ["a/c"]
    assert (logger.propagate, logger.level, list(logger.handlers)) == before
    assert "not supported" not in capfd.readouterr().err


def test_unconvertible_nodes_finds_non_onnx_ops_in_subgraphs_too():
    inner = helper.make_graph(
        [helper.make_node("Lgamma", ["x"], ["y"], name="body/lgamma")],
        "body",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="ok"),
        helper.make_node("Erfc", ["r"], ["e"], name="model/gelu/Erfc"),
        helper.make_node("If", ["c"], ["z"], name="branch", then_branch=inner, else_branch=inner),
        helper.make_node("Gelu", ["r"], ["g"], name="model/gelu20"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    found = tf2onnx_ext.unconvertible_nodes(proto, 17)
    assert ("model/gelu/Erfc", "Erfc") in found and ("body/lgamma", "Lgamma") in found
    assert ("model/gelu20", "Gelu") in found  # ONNX Gelu exists only from opset 20
    assert ("ok", "Relu") not in found
    assert ("model/gelu20", "Gelu") not in tf2onnx_ext.unconvertible_nodes(proto, 20)
    assert np.array(found).shape == (4, 2)
