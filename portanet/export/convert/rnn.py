"""Keras recurrent layers as native ONNX ``LSTM``, ``GRU`` and ``RNN`` operators.

tf2onnx recognises recurrent layers by matching the TensorFlow graph of their time loop against
patterns. Keras 3's GRU and SimpleRNN, its LSTM with ``hard_sigmoid``, and old Keras 2 layers
match none of them, and stay an ONNX ``Loop`` — correct, but slow, and opaque to runtimes that
optimise the native operators. So portanet converts them itself, at the level of the layer:

* While the model is traced for conversion, the ``call`` of every plain ``LSTM``, ``GRU`` and
  ``SimpleRNN`` (and a ``Bidirectional`` of one, merged by concatenation) is replaced by a
  placeholder TensorFlow op (``tf.numpy_function``, never run) whose output has the layer's
  shape; :class:`NativeRnns` remembers the layer's weights and activations under the op's token.
* tf2onnx hands each placeholder to :meth:`NativeRnns.convert_node` (a custom op handler), which
  emits ``Transpose`` → ``LSTM``/``GRU``/``RNN`` → ``Transpose`` → ``Reshape``; the last keeps
  the placeholder's tensor name, so the layerwise comparison still finds the layer's output.

Weights are reordered to ONNX's gate order (LSTM: Keras i, f, c, o → ONNX i, o, f, c; GRU: z, r,
h in both, ``reset_after`` → ``linear_before_reset=1`` with separate recurrent biases).
Activations are read from the layer; ``hard_sigmoid`` is measured, not assumed: Keras 3 defines
it as ``relu6(x + 3) / 6`` (slope 1/6), Keras 2 and tf-keras as ``clip(0.2·x + 0.5, 0, 1)``
(slope 0.2), and the ONNX ``HardSigmoid`` gets the slope and offset found (``activation_alpha``/
``activation_beta`` list values for the activations that take them, in order — how
onnxruntime reads them). A layer with a mask, an initial state, ``go_backwards``, ``stateful``,
``return_state`` or an activation ONNX has no equivalent for is traced as it is, and tf2onnx
converts it as before. Export side only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Keras layer class → ONNX operator.
SUPPORTED = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
#: TensorFlow op type of the placeholders.
PLACEHOLDER_OPS = ("PyFunc",)
#: Suffix of the tensor holding a sequence output time-major, (time, batch, features): it
#: survives when tf2onnx cancels the transposes between two recurrent layers, and the layerwise
#: comparison looks for it when the layer's own tensor is gone.
TIME_MAJOR_SUFFIX = "__time_major"


def time_major_name(tensor: str) -> str:
    """The name of the time-major copy of a recurrent layer's sequence output ``tensor``."""
    base, _, index = tensor.partition(":")
    return f"{base}{TIME_MAJOR_SUFFIX}:{index or 0}"


#: ONNX activations that take (alpha, beta).
_PARAMETRIC = {"HardSigmoid", "Affine"}


@dataclass
class RnnSpec:
    """Everything the ONNX operator for one recurrent layer needs."""

    layer: str
    op: str
    hidden: int
    directions: int
    activations: list[tuple[str, float | None, float | None]]
    weights: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray
    return_sequences: bool
    linear_before_reset: int | None = None

    def attributes(self) -> dict[str, Any]:
        """The ONNX operator's attributes."""
        names = [a[0] for a in self.activations]
        attrs: dict[str, Any] = {
            "hidden_size": self.hidden,
            "activations": names,
            "direction": "bidirectional" if self.directions == 2 else "forward",
        }
        params = [a for a in self.activations if a[0] in _PARAMETRIC]
        if params:
            attrs["activation_alpha"] = [float(a[1] or 0.0) for a in params]  # set when parametric
            attrs["activation_beta"] = [float(a[2] or 0.0) for a in params]
        if self.linear_before_reset is not None:
            attrs["linear_before_reset"] = self.linear_before_reset
        return attrs


def onnx_activation(function: Any) -> tuple[str, float | None, float | None] | None:
    """The ONNX recurrent activation computing ``function`` (a Keras activation), or ``None``.
    ``hard_sigmoid`` is measured on a few points: its slope and offset differ between Keras 2
    and Keras 3."""
    name = getattr(function, "__name__", "")
    simple = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
    if name in simple:
        return simple[name], None, None
    if name == "linear":
        return "Affine", 1.0, 0.0
    if name != "hard_sigmoid":
        return None
    import tensorflow as tf

    points = np.array([-1e4, -0.5, 0.0, 0.5, 1e4], dtype=np.float32)
    values = np.asarray(function(tf.constant(points)), dtype=np.float64)
    slope, offset = values[3] - values[1], values[2]
    if not (
        values[0] == 0.0
        and values[4] == 1.0
        and 0 < slope < 2
        and abs((values[3] - values[2]) - (values[2] - values[1])) < 1e-6
    ):
        return None
    for known in (0.2, 1.0 / 6.0):  # tf-keras / Keras 2, Keras 3: exact, not float32-measured
        if abs(slope - known) < 1e-5:
            slope = known
    return "HardSigmoid", float(slope), float(offset)


def _lstm_order(matrix: np.ndarray, hidden: int) -> np.ndarray:
    """Keras LSTM gates (i, f, c, o) along the last axis → ONNX order (i, o, f, c)."""
    i, f, c, o = (matrix[..., k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, o, f, c], axis=-1)


def _direction(layer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(W, R, B) of one direction in ONNX layout, from a plain recurrent layer."""
    cell = getattr(layer, "cell", layer)
    kind = type(layer).__name__
    hidden = int(cell.units)
    weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
    if len(weights) not in (2, 3):
        return None
    kernel, recurrent = weights[0], weights[1]
    bias = weights[2] if len(weights) == 3 else None
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    input_bias = np.zeros(gates * hidden, np.float32)
    recurrent_bias = np.zeros(gates * hidden, np.float32)
    if bias is not None:
        if bias.ndim == 2:  # GRU reset_after: (input bias, recurrent bias)
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias
    if kind == "LSTM":
        kernel, recurrent = _lstm_order(kernel, hidden), _lstm_order(recurrent, hidden)
        input_bias = _lstm_order(input_bias, hidden)
    return kernel.T, recurrent.T, np.concatenate([input_bias, recurrent_bias])


def _plain(layer: Any) -> bool:
    """A recurrent layer ONNX computes natively: no state carried or returned, forwards."""
    if type(layer).__name__ not in SUPPORTED:
        return False
    return not any(
        bool(getattr(layer, flag, False))
        for flag in ("stateful", "go_backwards", "return_state", "time_major")
    )


def _activations(layer: Any) -> list[tuple[str, float | None, float | None]] | None:
    cell = getattr(layer, "cell", layer)
    kind = type(layer).__name__
    if kind == "SimpleRNN":
        functions = [cell.activation]
    elif kind == "GRU":
        functions = [cell.recurrent_activation, cell.activation]
    else:
        functions = [cell.recurrent_activation, cell.activation, cell.activation]
    found = [onnx_activation(f) for f in functions]
    return None if any(a is None for a in found) else found  # type: ignore[return-value]


def rnn_spec(layer: Any, name: str) -> RnnSpec | None:
    """The ONNX operator for ``layer`` (a plain recurrent layer, or a Bidirectional of two
    merged by concatenation), or ``None`` when it has none."""
    if type(layer).__name__ == "Bidirectional":
        forward, backward = (
            getattr(layer, "forward_layer", None),
            getattr(layer, "backward_layer", None),
        )
        if (
            getattr(layer, "merge_mode", None) != "concat"
            or forward is None
            or backward is None
            or not _plain(forward)
            or type(backward).__name__ != type(forward).__name__
            or not getattr(backward, "go_backwards", False)
            or bool(getattr(backward, "return_state", False))
            or bool(getattr(backward, "stateful", False))
            or bool(getattr(forward, "return_sequences", False))
            != bool(getattr(backward, "return_sequences", False))
        ):
            return None
        layers = [forward, backward]
    elif _plain(layer):
        layers = [layer]
    else:
        return None
    parts = [_direction(one) for one in layers]
    activations = [_activations(one) for one in layers]
    if any(p is None for p in parts) or any(a is None for a in activations):
        return None
    kind = type(layers[0]).__name__
    cell = getattr(layers[0], "cell", layers[0])
    reset_after = None
    if kind == "GRU":
        reset_after = int(bool(getattr(cell, "reset_after", False)))
        if any(
            int(bool(getattr(getattr(o, "cell", o), "reset_after", False))) != reset_after
            for o in layers
        ):
            return None
    return RnnSpec(
        layer=name,
        op=SUPPORTED[kind],
        hidden=int(cell.units),
        directions=len(layers),
        activations=[a for acts in activations for a in acts],  # type: ignore[union-attr]
        weights=np.stack([p[0] for p in parts]),  # type: ignore[index]
        recurrent=np.stack([p[1] for p in parts]),  # type: ignore[index]
        bias=np.stack([p[2] for p in parts]),  # type: ignore[index]
        return_sequences=bool(getattr(layers[0], "return_sequences", False)),
        linear_before_reset=reset_after,
    )


def _never_run(*_: Any) -> Any:
    raise RuntimeError("portanet's recurrent-layer placeholder is converted, never run")


@dataclass
class NativeRnns:
    """The recurrent layers of one conversion, by placeholder token."""

    specs: dict[str, RnnSpec] = field(default_factory=dict)
    #: Layer name → why it was left to tf2onnx (for messages and tests).
    skipped: dict[str, str] = field(default_factory=dict)
    #: ``id``s of the variables traced as inputs (:mod:`portanet.export.convert.external`):
    #: a layer with one of them has no constant weights to give the native operator.
    traced_inputs: set[int] = field(default_factory=set)

    def substitute(self, path: str, layer: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The placeholder output replacing ``layer``'s call, or ``None`` to trace it as is."""
        import tensorflow as tf

        kind = type(layer).__name__
        if kind not in SUPPORTED and kind != "Bidirectional":
            return None
        if any(id(w) in self.traced_inputs for w in layer.weights):
            self.skipped[path] = "its weights are traced as inputs (a model over 2 GB)"
            return None
        if (
            len(args) != 1
            or kwargs.get("mask") is not None
            or kwargs.get("initial_state") is not None
            or kwargs.get("constants") is not None
        ):
            self.skipped[path] = "called with a mask, an initial state or constants"
            return None
        sequences = args[0]
        if (
            not isinstance(sequences, tf.Tensor)
            or sequences.shape.rank != 3
            or sequences.dtype != tf.float32
        ):
            self.skipped[path] = "its input is not one float32 (batch, time, features) tensor"
            return None
        with tf.init_scope():  # weights and activations are read eagerly, outside the trace
            spec = rnn_spec(layer, path)
        if spec is None:
            self.skipped[path] = "its configuration has no native ONNX equivalent"
            return None
        output = tf.numpy_function(
            _never_run, [sequences], tf.float32, stateful=True, name=f"{layer.name}_native"
        )
        width = spec.hidden * spec.directions
        batch, steps = sequences.shape[0], sequences.shape[1]
        output.set_shape((batch, steps, width) if spec.return_sequences else (batch, width))
        self.specs[output.op.get_attr("token").decode()] = spec
        return output

    def handlers(self) -> dict[str, tuple[Any, list[Any]]]:
        """tf2onnx ``custom_op_handlers`` converting the placeholders."""
        return {op: (self.convert_node, []) for op in PLACEHOLDER_OPS}

    def convert_node(self, ctx: Any, node: Any, name: str, args: list[Any]) -> None:
        """tf2onnx handler: turn one placeholder into the native ONNX recurrent operator."""
        from tf2onnx import utils

        token = node.get_attr_value("token")
        token = token.decode() if isinstance(token, bytes) else str(token)
        spec = self.specs.get(token)
        if spec is None:
            raise ValueError(f"PyFunc {name!r} is not one of portanet's recurrent layers")
        source = node.input[0]
        time_major = ctx.make_node(
            "Transpose", [source], attr={"perm": [1, 0, 2]}, op_name_scope=name
        )
        constants = [
            ctx.make_const(utils.make_name(f"{name}_{part}"), value).output[0]
            for part, value in (("W", spec.weights), ("R", spec.recurrent), ("B", spec.bias))
        ]
        rnn = ctx.make_node(
            spec.op,
            [time_major.output[0], *constants],
            attr=spec.attributes(),
            output_count=2,
            op_name_scope=name,
        )
        # Shapes are moved with Squeeze, Concat, Flatten and Transpose only: no Reshape whose
        # zeros tf2onnx's transpose optimizer could move a transpose through.
        attrs: dict[str, Any]
        if spec.return_sequences:  # Y: (time, directions, batch, hidden)
            merged = rnn.output[0]
            if spec.directions == 2:
                halves = ctx.make_node(
                    "Split", [merged], attr={"axis": 1}, output_count=2, op_name_scope=name
                )
                if ctx.opset >= 18:
                    halves.set_attr("num_outputs", 2)
                merged = ctx.make_node(
                    "Concat", list(halves.output), attr={"axis": 3}, op_name_scope=name
                ).output[0]
            steps = self._squeeze(ctx, merged, 1, name, time_major_name(node.output[0]))
            final, inputs, attrs = "Transpose", [steps], {"perm": [1, 0, 2]}
        elif spec.directions == 2:  # Y_h: (2, batch, hidden)
            moved = ctx.make_node(
                "Transpose", [rnn.output[1]], attr={"perm": [1, 0, 2]}, op_name_scope=name
            )
            final, inputs, attrs = "Flatten", [moved.output[0]], {"axis": 1}
        else:
            final, inputs, attrs = "Squeeze", [rnn.output[1]], {}
            if ctx.opset >= 13:
                inputs.append(
                    ctx.make_const(
                        utils.make_name(f"{name}_axes"), np.array([0], dtype=np.int64)
                    ).output[0]
                )
            else:
                attrs = {"axes": [0]}
        for key in list(node.attr):
            del node.attr[key]
        node.type = final
        node.domain = ""
        for key, value in attrs.items():
            node.set_attr(key, value)
        ctx.replace_inputs(node, inputs)

    @staticmethod
    def _squeeze(ctx: Any, tensor: str, axis: int, name: str, output: str) -> str:
        from tf2onnx import utils

        if ctx.opset >= 13:
            axes = ctx.make_const(utils.make_name(f"{name}_axes"), np.array([axis], np.int64))
            return str(
                ctx.make_node(
                    "Squeeze", [tensor, axes.output[0]], outputs=[output], op_name_scope=name
                ).output[0]
            )
        return ctx.make_node(
            "Squeeze", [tensor], attr={"axes": [axis]}, outputs=[output], op_name_scope=name
        ).output[0]
