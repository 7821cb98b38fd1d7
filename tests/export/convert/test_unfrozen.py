"""tf-keras models over 2 GB: their large variables stay out of the frozen graph and are
written as external data, like a Keras 3 model's (the limit lowered so a few-MB model takes
that path through the real ``portanet export``)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import portanet
from portanet.cli import app
from portanet.errors import ConversionError
from portanet.export.keras.load import from_model, quiet_tensorflow

tf = quiet_tensorflow()
import tf_keras  # noqa: E402

import portanet.export.convert.keras_to_onnx as conversion  # noqa: E402
from portanet.export.convert.external import INPUT_PREFIX, ExternalWeights  # noqa: E402
from portanet.export.convert.unfrozen import traces_unfrozen  # noqa: E402
from portanet.export.preflight import estimate_peak  # noqa: E402

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("seeded")


def _ids_model() -> tf_keras.Model:
    """Ids → a 1.5 MB Embedding table (ResourceGather) → mean → a 1.2 MB Dense (ReadVariableOp)
    → a small Dense, in tf-keras."""
    ids = tf_keras.Input((6,), dtype="int32", name="ids")
    x = tf_keras.layers.Embedding(4000, 96, name="table")(ids)
    x = tf_keras.layers.GlobalAveragePooling1D()(x)
    x = tf_keras.layers.Dense(3200, activation="tanh", name="wide")(x)
    return tf_keras.Model(ids, tf_keras.layers.Dense(3, name="score")(x), name="ids_model")


def _lower_limit(monkeypatch, model) -> None:
    weights = conversion.weight_bytes(model)
    monkeypatch.setattr(conversion, "PROTOBUF_LIMIT", conversion.GRAPH_HEADROOM + weights - 1)


def _exported_over_the_limit(model, tmp_path, monkeypatch, name: str):
    """Export ``model`` with the 2 GB limit lowered under its weights; the gate must pass.
    The written file's path and its proto (external data not loaded)."""
    from portanet.export import export_model

    _lower_limit(monkeypatch, model)
    out = tmp_path / "out"
    out.mkdir()
    path = out / name
    assert export_model(model, path).report.passed
    return path, onnx.load(str(path), load_external_data=False)


def _large_nbytes(model) -> int:
    return sum(w.numpy().nbytes for w in model.weights if w.numpy().nbytes >= 1 << 20)


def test_a_tf_keras_h5_over_the_limit_exports_with_external_data(tmp_path, monkeypatch):
    source = tmp_path / "ids.h5"
    _ids_model().save(source)  # written by tf-keras (Keras 2 HDF5)
    model = tf_keras.models.load_model(source, compile=False)
    assert traces_unfrozen(model)
    _lower_limit(monkeypatch, model)
    assert conversion.streamed_bytes(model) == _large_nbytes(model) > 2 * 2**20  # preflight
    out = tmp_path / "out"
    out.mkdir()
    report = tmp_path / "report.json"
    result = runner.invoke(
        app, ["export", str(source), "--output", str(out / "ids.onnx"), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    data = out / "ids.onnx.data"
    assert sorted(p.name for p in out.iterdir()) == ["ids.onnx", "ids.onnx.data"]
    assert data.stat().st_size >= _large_nbytes(model)
    assert (out / "ids.onnx").stat().st_size < 100_000  # the small Dense only
    proto = onnx.load(str(out / "ids.onnx"), load_external_data=False)
    external = {
        t.name: {e.key: e.value for e in t.external_data}
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }
    assert len(external) == 2 and all(n.startswith(INPUT_PREFIX) for n in external)
    assert {e["location"] for e in external.values()} == {"ids.onnx.data"}
    assert all(int(e["offset"]) % 4096 == 0 for e in external.values())
    assert [i.name for i in proto.graph.input] == ["ids"]
    recorded = json.loads(report.read_text())
    assert recorded["passed"] is True
    total = conversion.weight_bytes(model)  # the preflight counted the streamed weights once
    streamed = _large_nbytes(model)
    assert (
        recorded["export"]["memory_estimate"]
        == estimate_peak(total, "onnxruntime", streamed=streamed)
        < estimate_peak(total, "onnxruntime")
    )
    runtime = portanet.load(out / "ids.onnx")
    assert runtime.metadata["portanet.parity"]["passed"] is True
    ids = np.random.default_rng(5).integers(0, 4000, (9, 6)).astype(np.int32)
    assert np.abs(runtime.predict(ids) - model(ids).numpy()).max() < 1e-5


def test_the_frozen_graph_holds_only_the_small_weights(monkeypatch):
    from portanet.export.convert.keras_to_onnx import external_weights, freeze, trace_keras

    model = _ids_model()
    _lower_limit(monkeypatch, model)
    external = external_weights(from_model(model))
    assert [v.name for v in external.variables] == ["table/embeddings:0", "wide/kernel:0"]
    inputs, _ = conversion.keras_signature(model)
    concrete, _ = trace_keras(model, inputs, external=external)
    graph_def, tf_inputs, _ = freeze(concrete, external)
    assert tf_inputs == ["ids:0", f"{INPUT_PREFIX}0:0", f"{INPUT_PREFIX}1:0"]
    assert graph_def.ByteSize() < 200_000 < external.nbytes  # the 2.9 MB never copied in
    ops = {n.op for n in graph_def.node}
    assert not ops & {"ReadVariableOp", "ResourceGather", "VarHandleOp"}
    by_name = {n.name: n for n in graph_def.node}
    assert by_name[f"{INPUT_PREFIX}0"].attr["dtype"].type == tf.float32.as_datatype_enum
    # What TensorFlow itself computes from the rewritten graph is the model's answer.
    ids = np.random.default_rng(1).integers(0, 4000, (4, 6)).astype(np.int32)
    feeds = {"ids:0": ids}
    feeds.update(
        {f"{n}:0": v.numpy() for n, v in zip(external.names, external.variables, strict=True)}
    )
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            got = session.run(concrete.outputs[0].name, feed_dict=feeds)
    assert np.abs(got - model(ids).numpy()).max() < 1e-6


def test_the_layerwise_comparison_finds_the_layers_of_an_unfrozen_model(tmp_path, monkeypatch):
    from portanet.export import export_model

    model = _ids_model()
    _lower_limit(monkeypatch, model)
    result = export_model(model, tmp_path / "ids.onnx", layerwise=True)
    assert result.report.passed and result.data is not None and result.data.is_file()
    table = result.report.layerwise
    assert {"wide", "score"} <= {row.layer for row in table.rows}
    assert table.first_failure is None


class _BranchReader(tf_keras.layers.Layer):
    """Reads its (large) kernel inside a ``tf.cond`` branch: the variable itself is passed
    into the branch functions (an ``If`` op), not read before them."""

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), 600))

    def call(self, inputs):
        return tf.cond(
            tf.shape(inputs)[0] >= 0,  # always true, known only when run
            lambda: tf.matmul(inputs, self.kernel),
            lambda: -tf.matmul(inputs, self.kernel),
        )


def test_a_large_weight_read_another_way_is_refused_by_name(tmp_path, monkeypatch):
    inputs = tf_keras.Input((600,), name="x")
    model = tf_keras.Model(inputs, _BranchReader(name="branch_reader")(inputs))
    _lower_limit(monkeypatch, model)
    with pytest.raises(ConversionError, match=r"read by the \w*If node .*branch_reader"):
        conversion.convert(from_model(model))


def test_under_the_limit_a_weight_read_another_way_keeps_every_weight_in_the_graph(tmp_path):
    """A large variable passed into a ``tf.cond`` cannot be made an input: under 2 GB the
    conversion falls back to constants instead of refusing the model."""
    from portanet.export import export_model
    from portanet.export.convert.lifted import lifted_weights

    inputs = tf_keras.Input((600,), name="x")
    model = tf_keras.Model(inputs, _BranchReader(name="branches")(inputs))
    assert lifted_weights(model) is not None
    result = export_model(model, tmp_path / "branches.onnx")
    assert result.report.passed and result.report.max_abs < 1e-5
    proto = onnx.load(str(tmp_path / "branches.onnx"))
    assert not any(t.name.startswith(INPUT_PREFIX) for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["x"]


def test_recurrent_weights_stay_native_in_the_graph(tmp_path, monkeypatch):
    """The native LSTM reads its weights as constants: only the Dense goes external."""

    inputs = tf_keras.Input((5, 4), name="steps")
    x = tf_keras.layers.LSTM(128, name="lstm")(inputs)
    x = tf_keras.layers.Dense(2600, name="wide")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(x))
    path, proto = _exported_over_the_limit(model, tmp_path, monkeypatch, "rnn.onnx")
    assert "LSTM" in {n.op_type for n in proto.graph.node}
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert [list(t.dims) for t in external] == [[128, 2600]]
    steps = np.random.default_rng(2).normal(size=(3, 5, 4)).astype(np.float32)
    runtime = portanet.load(path)
    assert np.abs(runtime.predict(steps) - model(steps).numpy()).max() < 1e-5


def test_a_tensorflow_signature_over_the_limit_is_refused(tmp_path, monkeypatch):
    """A SavedModel only TensorFlow can load (no Keras model to trace) is still refused."""
    import keras

    inputs = keras.Input((600,), name="features")
    keras.Model(inputs, keras.layers.Dense(600)(inputs)).export(tmp_path / "sm", verbose=False)
    monkeypatch.setattr(conversion, "PROTOBUF_LIMIT", conversion.GRAPH_HEADROOM + 100)
    result = runner.invoke(
        app, ["export", str(tmp_path / "sm"), "--output", str(tmp_path / "sm.onnx")]
    )
    assert result.exit_code == 3, result.output
    assert "Keras 3 and tf-keras models only, got one loaded with tensorflow" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "sm.onnx").exists()


def test_external_weights_write_a_tf_variable_in_chunks(tmp_path):
    """tf-keras variables (``value`` is a method) are read in slices into the data file."""
    import portanet.export.convert.external as external_module

    variable = tf.Variable(np.arange(24 * 5, dtype=np.float32).reshape(24, 5))
    weights = ExternalWeights([variable])
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", [weights.names[0]], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info(weights.names[0], onnx.TensorProto.FLOAT, [24, 5])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [24, 5])],
        )
    )
    chunks = list(external_module._chunks(variable, limit=5 * 4 * 7))
    assert [c.shape for c in chunks] == [(7, 5), (7, 5), (7, 5), (3, 5)]
    data = weights.write(proto, tmp_path / "m.onnx")
    assert np.array_equal(np.fromfile(data, dtype=np.float32).reshape(24, 5), variable.numpy())


class _SpareKernel(tf_keras.layers.Layer):
    """A layer with a large weight its call never reads (kept, as Keras keeps it)."""

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), 600))
        self.spare = self.add_weight("spare", (600, 600))

    def call(self, inputs):
        return tf.matmul(inputs, self.kernel)


def test_a_large_weight_the_call_never_reads_is_still_written(tmp_path, monkeypatch):

    inputs = tf_keras.Input((600,), name="x")
    model = tf_keras.Model(inputs, _SpareKernel(name="spare_kernel")(inputs))
    path, proto = _exported_over_the_limit(model, tmp_path, monkeypatch, "spare.onnx")
    assert len(proto.graph.initializer) == 2 and [i.name for i in proto.graph.input] == ["x"]
    x = np.random.default_rng(4).normal(size=(3, 600)).astype(np.float32)
    assert np.abs(portanet.load(path).predict(x) - model(x).numpy()).max() < 1e-4
