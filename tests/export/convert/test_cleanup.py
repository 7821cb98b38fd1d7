"""onnxruntime's basic offline optimization cleans a graph, keeps its outputs and writes only
standard ONNX operators."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from portanet.export.convert.cleanup import basic_optimize, every_node, non_standard_ops


def _transpose_pair_model() -> onnx.ModelProto:
    """x → Transpose → Transpose back → Conv (with a constant weight) → Relu: the shape tf2onnx
    leaves around every NHWC convolution."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Transpose", ["x"], ["nhwc"], perm=[0, 2, 3, 1], name="t1"),
        helper.make_node("Transpose", ["nhwc"], ["nchw"], perm=[0, 3, 1, 2], name="t2"),
        helper.make_node("Identity", ["w"], ["w_id"], name="id"),
        helper.make_node("Conv", ["nchw", "w_id"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="k", value="v")
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_basic_optimization_removes_redundant_nodes_and_keeps_the_results():
    model = _transpose_pair_model()
    cleaned = basic_optimize(model)
    ops = [n.op_type for n in cleaned.graph.node]
    assert "Transpose" not in ops and "Identity" not in ops and "Conv" in ops
    assert len(ops) < len(model.graph.node)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(cleaned, x), _run(model, x))
    assert [i.name for i in cleaned.graph.input] == ["x"]
    assert [o.name for o in cleaned.graph.output] == ["y"]
    assert cleaned.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert cleaned.ir_version == 8 and list(cleaned.opset_import) == list(model.opset_import)
    assert [(p.key, p.value) for p in cleaned.metadata_props] == [("k", "v")]
    onnx.checker.check_model(cleaned, full_check=True)
    assert non_standard_ops(cleaned) == []


def test_non_standard_operators_are_found_in_subgraphs_too():
    model = _transpose_pair_model()
    assert non_standard_ops(model) == []
    inner = helper.make_graph(
        [helper.make_node("FusedGemm", ["a"], ["b"], domain="com.microsoft")],
        "body",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )
    model.graph.node.append(
        helper.make_node("If", ["c"], ["d"], then_branch=inner, else_branch=inner)
    )
    assert non_standard_ops(model) == ["com.microsoft.FusedGemm"] * 2


def test_every_node_walks_subgraphs_at_any_depth_in_order():
    leaf = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["b"], name="leaf")],
        "leaf",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )
    middle = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["y"], name="middle"),
            helper.make_node(
                "If", ["c"], ["z"], name="inner_if", then_branch=leaf, else_branch=leaf
            ),
        ],
        "middle",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    outer = helper.make_graph(
        [
            helper.make_node("Loop", ["n", "cond"], ["out"], name="loop", body=middle),
            helper.make_node("Abs", ["out"], ["final"], name="last"),
        ],
        "outer",
        [],
        [helper.make_tensor_value_info("final", TensorProto.FLOAT, None)],
    )
    names = [node.name for node in every_node(outer)]
    assert names == ["loop", "middle", "inner_if", "leaf", "leaf", "last"]
