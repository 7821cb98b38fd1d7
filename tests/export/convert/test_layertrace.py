"""Layer tracing: which layer made which op and tensor, and each layer's values."""

from __future__ import annotations

import numpy as np
import pytest

from portanet.export.keras.load import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

from portanet.export.convert.keras_to_onnx import call_model, keras_signature, trace_keras  # noqa: E402
from portanet.export.convert.layertrace import LayerTrace, hooked, record_outputs, walk_layers  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


def _nested(lib):
    layers = lib.layers
    inner = lib.Sequential(
        [
            lib.Input((6,)),
            layers.Dense(5, activation="relu", name="a"),
            layers.Dropout(0.5, name="drop"),
            layers.Dense(4, name="b"),
        ],
        name="inner",
    )
    return lib.Sequential([lib.Input((6,)), inner, layers.Dense(2, name="head")], name="outer")


@pytest.mark.parametrize("lib", [keras, tf_keras], ids=["keras3", "tf-keras"])
def test_trace_records_nested_layers_in_graph_order_with_their_ops(lib):
    model = _nested(lib)
    assert [p for p, _ in walk_layers(model)] == [
        "inner",
        "inner/a",
        "inner/drop",
        "inner/b",
        "head",
    ]
    concrete, trace = trace_keras(model, keras_signature(model)[0])
    assert [c.key for c in trace.calls] == ["inner/a", "inner/drop", "inner/b", "inner", "head"]
    assert [c.key for c in trace.leaves] == ["inner/a", "inner/drop", "inner/b", "head"]
    matmuls = {
        op.name: trace.layer_of(op.name).key
        for op in concrete.graph.get_operations()
        if op.type == "MatMul"
    }
    assert sorted(matmuls.values()) == ["head", "inner/a", "inner/b"]
    drop = next(c for c in trace.calls if c.key == "inner/drop")
    a = next(c for c in trace.calls if c.key == "inner/a")
    dropped = concrete.graph.get_tensor_by_name(drop.outputs[0])
    # Dropout at inference returns its input (Keras 3) or an Identity of it (tf-keras)
    assert drop.outputs == a.outputs or (
        dropped.op.type == "Identity" and dropped.op.inputs[0].name == a.outputs[0]
    )
    assert all("call" not in vars(layer) for _, layer in walk_layers(model))


def test_layer_of_follows_tf2onnx_and_inlined_names():
    model = _nested(keras)
    concrete, trace = trace_keras(model, keras_signature(model)[0])
    op = next(
        o.name
        for o in concrete.graph.get_operations()
        if o.type == "MatMul" and trace.layer_of(o.name).key == "head"
    )
    assert trace.layer_of(f"{op}__17").key == "head"
    assert trace.layer_of(f"{op}/inlined/Conv2D:0").key == "head"
    assert trace.layer_of("nowhere/op") is None
    assert LayerTrace([], {}).leaves == []


@pytest.mark.parametrize("lib", [keras, tf_keras], ids=["keras3", "tf-keras"])
def test_record_outputs_matches_each_layer_run_alone(lib):
    model = _nested(lib)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    values = record_outputs(model, lambda: call_model(model, [x]))
    inner = model.layers[0]
    a = np.asarray(inner.layers[0](x))
    b = np.asarray(inner.layers[2](a))
    assert np.allclose(values["inner/a"][0], a) and np.allclose(values["inner/b"][0], b)
    assert np.allclose(values["head"][0], np.asarray(model(x)))
    kept = record_outputs(model, lambda: call_model(model, [x]), keep="head".__eq__)
    assert list(kept) == ["head"]


def test_a_shared_layer_is_recorded_per_call():
    shared = keras.layers.Dense(3, name="shared")
    left, right = keras.Input((3,), name="left"), keras.Input((3,), name="right")
    model = keras.Model([left, right], keras.layers.Add()([shared(left), shared(right)]))
    x = [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)]
    values = record_outputs(model, lambda: call_model(model, x))
    assert "shared" in values and "shared#2" in values
    assert not np.allclose(values["shared"][0], values["shared#2"][0])


def test_hooks_are_removed_even_when_the_call_fails():
    model = _nested(keras)
    with pytest.raises(ValueError), hooked(model, lambda *args: None):
        assert all("call" in vars(layer) for _, layer in walk_layers(model))
        model(np.ones((1, 7), np.float32))
    assert all("call" not in vars(layer) for _, layer in walk_layers(model))
