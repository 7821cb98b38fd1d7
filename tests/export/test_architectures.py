"""Every supported architecture exports with parity: one real model file per row, made here with
Keras 3 (``.keras``) or tf-keras (``.h5``), exported through the CLI, the ONNX checked by
onnx.checker and the gate's numbers read from its JSON report.

The keras.applications networks have their own table (``tests/export/test_applications.py``);
the Teachable Machine file is marked ``slow``; CI runs it too. Set ``PORTANET_ARCH_LOG`` to
a file to collect ``{id, max_abs, seconds}`` lines (``scripts/architecture_table.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from portanet.cli import app
from portanet.export.convert.keras_to_onnx import call_model, keras_signature
from portanet.export.keras.load import quiet_tensorflow
from tests.helpers import sample_inputs

quiet_tensorflow()
import keras  # noqa: E402
import tf_keras  # noqa: E402

K, T = keras.layers, tf_keras.layers

pytestmark = pytest.mark.usefixtures("seeded")


@keras.saving.register_keras_serializable(package="portanet_tests")
class ApproximateGelu(keras.layers.Layer):
    """GELU with the tanh approximation (Keras has no string name for it)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.gelu(inputs, approximate=True)


@dataclass
class Arch:
    """One architecture: how to build it and what its export must show."""

    id: str
    build: Callable[[], Any]
    max_abs: float = 1e-4
    ops: set[str] = field(default_factory=set)
    args: tuple[str, ...] = ()
    slow: bool = False

    @property
    def suffix(self) -> str:
        return ".h5" if self.id.startswith("tfk-") else ".keras"


def _k3_multi_io() -> Any:
    tabular, image = keras.Input((8,), name="tabular"), keras.Input((16, 16, 3), name="image")
    x = K.Dense(8, activation="relu")(tabular)
    y = K.GlobalMaxPooling2D()(K.Conv2D(4, 3, activation="relu")(image))
    z = K.Concatenate()([x, y])
    return keras.Model(
        {"tabular": tabular, "image": image},
        {
            "score": K.Dense(1, activation="sigmoid", name="score")(z),
            "kind": K.Dense(3, activation="softmax", name="kind")(z),
        },
    )


def _tfk_multi_io() -> Any:
    tabular, image = tf_keras.Input((8,), name="tabular"), tf_keras.Input((16, 16, 3), name="image")
    x = T.Dense(8, activation="relu")(tabular)
    y = T.GlobalMaxPooling2D()(T.Conv2D(4, 3, activation="relu")(image))
    z = T.Concatenate()([x, y])
    return tf_keras.Model(
        [tabular, image],
        [
            T.Dense(1, activation="sigmoid", name="score")(z),
            T.Dense(3, activation="softmax", name="kind")(z),
        ],
    )


def _cnn(lib: Any, layers: Any) -> Any:
    return lib.Sequential(
        [
            lib.Input((20, 20, 3)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.SeparableConv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.AveragePooling2D(2),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(5, activation="softmax"),
        ],
        name="cnn",
    )


def _k3_normalization() -> Any:
    norm = K.Normalization()
    norm.adapt(np.random.default_rng(3).normal(50.0, 12.0, (256, 6)).astype("float32"))
    return keras.Sequential(
        [
            keras.Input((6,)),
            norm,
            K.Dense(8, activation="relu"),
            K.LayerNormalization(),
            K.Dense(1),
        ],
        name="normalized",
    )


def _nested(lib: Any, layers: Any) -> Any:
    """Like a Teachable Machine file: a Sequential of two Sequentials."""
    features = lib.Sequential(
        [
            lib.Input((24, 24, 3)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.DepthwiseConv2D(3),
            layers.GlobalAveragePooling2D(),
        ],
        name="features",
    )
    head = lib.Sequential(
        [
            lib.Input((8,)),
            layers.Dense(6, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        name="head",
    )
    return lib.Sequential([lib.Input((24, 24, 3)), features, head], name="nested")


def _seq(lib: Any, *layers: Any, shape: tuple = (10, 4), dtype: str = "float32") -> Any:
    return lib.Sequential([lib.Input(shape, dtype=dtype), *layers])


ARCHS = [
    Arch(
        "k3-sequential-dense-bn-dropout",
        lambda: _seq(
            keras,
            K.Dense(16, activation="relu"),
            K.BatchNormalization(),
            K.Dropout(0.3),
            K.Dense(8, activation="swish"),
            K.Dense(1, activation="sigmoid"),
            shape=(12,),
        ),
    ),
    Arch("k3-functional-multi-io-named", _k3_multi_io),
    Arch("k3-cnn-conv2d-depthwise-separable-pool", lambda: _cnn(keras, K)),
    Arch(
        "k3-conv1d-pool-layernorm-swish",
        lambda: _seq(
            keras,
            K.Conv1D(8, 3, activation="swish"),
            K.MaxPooling1D(),
            K.Conv1D(8, 3, padding="same"),
            K.LayerNormalization(),
            K.AveragePooling1D(2),
            K.GlobalAveragePooling1D(),
            K.Dense(4, activation="softmax"),
            shape=(24, 3),
        ),
    ),
    Arch(
        "k3-grouped-conv",
        lambda: _seq(
            keras,
            K.Conv2D(8, 3, groups=4),
            K.Conv2D(8, 7, padding="same", groups=8),
            K.GlobalAveragePooling2D(),
            K.Dense(2),
            shape=(16, 16, 4),
        ),
        ops={"Conv"},
    ),
    Arch(
        "k3-embedding-int-lstm-sequences",
        lambda: _seq(
            keras,
            K.Embedding(50, 8),
            K.LSTM(8, return_sequences=True),
            K.LSTM(6),
            K.Dense(1, activation="sigmoid"),
            shape=(12,),
            dtype="int32",
        ),
        ops={"LSTM"},
    ),
    Arch(
        "k3-embedding-float-gru",
        lambda: _seq(
            keras,
            K.Embedding(30, 8),
            K.GRU(8, return_sequences=True),
            K.GRU(4),
            K.Dense(3, activation="softmax"),
            shape=(12,),
        ),
    ),
    Arch(
        "k3-simplernn-sequences",
        lambda: _seq(keras, K.SimpleRNN(8, return_sequences=True), K.SimpleRNN(5), K.Dense(2)),
    ),
    Arch(
        "k3-bidirectional-lstm-gru",
        lambda: _seq(
            keras,
            K.Bidirectional(K.LSTM(6, return_sequences=True)),
            K.Bidirectional(K.GRU(4)),
            K.Dense(1),
        ),
        ops={"LSTM"},
    ),
    Arch("k3-normalization-layernorm", _k3_normalization),
    Arch(
        "k3-rescaling-cnn",
        lambda: _seq(
            keras,
            K.Rescaling(1 / 255),
            K.Conv2D(6, 3, activation="relu"),
            K.GlobalAveragePooling2D(),
            K.Dense(2, activation="softmax"),
            shape=(16, 16, 3),
        ),
    ),
    Arch(
        "k3-gelu-exact",
        lambda: _seq(
            keras,
            K.Dense(16, activation="gelu"),
            K.Dense(16),
            K.Activation("gelu"),
            K.Dense(2),
            shape=(10,),
        ),
        ops={"Erf"},
    ),
    Arch(
        "k3-gelu-approximate",
        lambda: _seq(  # a custom layer: trusted, it is ours
            keras, K.Dense(16), ApproximateGelu(), K.Dense(2), shape=(10,)
        ),
        ops={"Tanh"},
        args=("--allow-unsafe",),
    ),
    Arch(
        "k3-celu-softmax",
        lambda: _seq(
            keras, K.Dense(16, activation="celu"), K.Dense(4, activation="softmax"), shape=(10,)
        ),
        ops={"Exp", "Softmax"},
    ),
    Arch("k3-nested-sequential", lambda: _nested(keras, K)),
    Arch(
        "tfk-sequential-dense-bn-dropout",
        lambda: _seq(
            tf_keras,
            T.Dense(16, activation="relu"),
            T.BatchNormalization(),
            T.Dropout(0.3),
            T.Dense(8, activation="swish"),
            T.Dense(1, activation="sigmoid"),
            shape=(12,),
        ),
    ),
    Arch("tfk-functional-multi-io-named", _tfk_multi_io),
    Arch("tfk-cnn-conv2d-depthwise-separable-pool", lambda: _cnn(tf_keras, T)),
    Arch(
        "tfk-lstm-gru-sequences",
        lambda: _seq(tf_keras, T.LSTM(8, return_sequences=True), T.GRU(6), T.Dense(1)),
        ops={"LSTM", "GRU"},
    ),
    Arch(
        "tfk-bidirectional-simplernn",
        lambda: _seq(
            tf_keras, T.Bidirectional(T.LSTM(6, return_sequences=True)), T.SimpleRNN(4), T.Dense(2)
        ),
    ),
    Arch(
        "tfk-embedding-float-lstm",
        lambda: _seq(
            tf_keras, T.Embedding(40, 8), T.LSTM(6), T.Dense(1, activation="sigmoid"), shape=(12,)
        ),
        ops={"LSTM"},
    ),
    Arch(
        "tfk-gelu-exact",
        lambda: _seq(tf_keras, T.Dense(16, activation="gelu"), T.Dense(2), shape=(10,)),
        ops={"Erf"},
    ),
    Arch("tfk-nested-sequential", lambda: _nested(tf_keras, T)),
]


def _params() -> list[Any]:
    return [pytest.param(a, id=a.id, marks=[pytest.mark.slow] if a.slow else []) for a in ARCHS]


def _log(arch: Arch, max_abs: float, seconds: float) -> None:
    path = os.environ.get("PORTANET_ARCH_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(
                json.dumps({"id": arch.id, "max_abs": max_abs, "seconds": round(seconds, 1)}) + "\n"
            )


@pytest.mark.parametrize("arch", _params())
def test_architecture_exports_with_parity(arch: Arch, tmp_path):
    import portanet
    from portanet.export.verify.runners import run_onnx

    model = arch.build()  # seeded: the weights, and so the figures, are the same on every run
    source = tmp_path / f"{arch.id}{arch.suffix}"
    model.save(source)
    target, report_file = tmp_path / "model.onnx", tmp_path / "report.json"
    started = time.perf_counter()
    result = CliRunner().invoke(
        app,
        ["export", str(source), "--output", str(target), "--report", str(report_file), *arch.args],
    )
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output

    proto = onnx.load(str(target))
    onnx.checker.check_model(proto, full_check=True)
    assert arch.ops <= {n.op_type for n in proto.graph.node}
    report = json.loads(report_file.read_text())
    assert report["passed"] and report["samples"] >= 24
    for output in report["outputs"]:
        assert output["elements"] > 0 and output["violations"] == 0
        assert 0 <= output["max_abs"] <= arch.max_abs, output
        assert output["mean_abs"] <= output["max_abs"]
    _log(arch, max(o["max_abs"] for o in report["outputs"]), seconds)

    # Independently of the gate: fresh inputs give varied outputs, and ONNX still agrees.
    runtime = portanet.load(target)
    arrays = sample_inputs(model, 6, seed=99)
    inputs, outputs = keras_signature(model)
    expected = [np.asarray(t) for t in call_model(model, arrays)]
    got = run_onnx(
        runtime, {s.name: a for s, a in zip(inputs, arrays, strict=True)}, runtime.schema
    )
    for name, reference in zip(outputs, expected, strict=True):
        assert float(np.ptp(reference, axis=0).max()) > 1e-3, f"{name}: degenerate outputs"
        assert np.abs(got[name] - reference).max() <= arch.max_abs


@pytest.mark.slow
def test_teachable_machine_mobilenet_exports_with_parity(legacy_mobilenet, tmp_path):
    """The real Keras 2.4.0 Teachable Machine file: a MobileNet nested in Sequentials."""
    import portanet

    source = legacy_mobilenet
    report_file = tmp_path / "report.json"
    started = time.perf_counter()
    result = CliRunner().invoke(
        app, ["export", str(source), "--layerwise", "--report", str(report_file)]
    )
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    target = source.with_suffix(".onnx")
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    report = json.loads(report_file.read_text())
    (output,) = report["outputs"]
    assert output["violations"] == 0 and output["max_abs"] <= 1e-5
    assert output["flips"] == 0 and output["decisions"] == report["samples"]
    _log(Arch("legacy-keras240-teachable-mobilenet", lambda: None), output["max_abs"], seconds)
    layerwise = report["layerwise"]
    assert layerwise["first_failure"] is None and len(layerwise["rows"]) > 50
    assert all(row["passed"] for row in layerwise["rows"])
    assert layerwise["rows"][0]["layer"].startswith("sequential_1/model1/")
    runtime = portanet.load(target)
    assert runtime.metadata["portanet.source"]["loader"] == "tf_keras"

    # The TensorRT-style variant: batch fixed to 1, channels-first input.
    name = runtime.input_names[0]
    fixed = tmp_path / "fixed.onnx"
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(source),
            "--output",
            str(fixed),
            "--batch-size",
            "1",
            "--inputs-as-nchw",
            name,
        ],
    )
    assert result.exit_code == 0, result.output
    nchw = portanet.load(fixed)
    assert nchw.schema.inputs[0].shape == (1, 3, 224, 224)
    image = np.random.default_rng(7).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    expected = runtime.predict(image)
    assert np.abs(nchw.predict(image.transpose(0, 3, 1, 2).copy()) - expected).max() < 1e-5
