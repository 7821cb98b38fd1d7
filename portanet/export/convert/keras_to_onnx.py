"""Keras → ONNX conversion through tf2onnx (export side: imports TensorFlow lazily).

The model is wrapped in a ``tf.function`` with an explicit input signature and traced with every
layer hooked (:mod:`portanet.export.convert.layertrace`), so each TensorFlow op is known by the
Keras layer that made it. The concrete function is frozen (variables *and* captured constants
such as an adapted Normalization layer's mean become graph constants; control flow is kept so
LSTMs still become ONNX ``LSTM`` ops) and nested XLA functions are made inlinable. The
``GraphDef`` goes through tf2onnx's steps without its whole-graph copies
(:mod:`portanet.export.convert.lean`) with portanet's extra op handlers
(:mod:`portanet.export.convert.tf2onnx_ext`), then — with ``cleanup="onnxruntime"`` — through
onnxruntime's basic offline optimization (:mod:`portanet.export.convert.cleanup`), a Keras 3 or
tf-keras model's large weights kept out of all of it and put back by the clean-up
(:mod:`portanet.export.convert.lifted`). Any op left
unconverted is refused with the layer(s) it comes from; the graph must take exactly the model's
inputs; inputs and outputs get the Keras names and the batch dimension is ``batch``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import ConversionError, InputError, first_line
from portanet.export.keras.load import LoadedKeras, quiet_tensorflow
from portanet.options import DEFAULT_OPSET
from portanet.schema import TensorSpec

MIN_OPSET, MAX_OPSET = 9, 18
#: A single ONNX file is one protobuf message, which cannot exceed 2 GiB.
PROTOBUF_LIMIT = 2**31 - 1
#: Room kept under that limit for the graph itself when judging a model by its weights.
GRAPH_HEADROOM = 64 * 2**20


def sanitize(name: str, taken: set[str]) -> str:
    """A readable ONNX tensor name from a Keras name: ``[A-Za-z0-9_]``, unique in ``taken``."""
    clean = re.sub(r"[^A-Za-z0-9_]+", "_", name.split(":")[0]).strip("_") or "tensor"
    if clean[0].isdigit():
        clean = f"t_{clean}"
    candidate, index = clean, 1
    while candidate in taken:
        candidate = f"{clean}_{index}"
        index += 1
    taken.add(candidate)
    return candidate


def keras_signature(model: Any) -> tuple[list[TensorSpec], list[str]]:
    """The model's inputs (sanitized names, shapes, dtypes) and sanitized output names."""
    taken: set[str] = set()
    raw_inputs = list(getattr(model, "inputs", None) or [])
    if not raw_inputs:
        raise ConversionError(
            f"model {getattr(model, 'name', '?')!r}: expected a built model "
            f"with known inputs, got none (build it or give it an Input)"
        )
    names = list(
        getattr(model, "input_names", None)
        or [_layer_name(t, f"input_{i}") for i, t in enumerate(raw_inputs)]
    )
    inputs = []
    for name, tensor in zip(names, raw_inputs, strict=False):
        shape = tensor.shape
        dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
        dtype = getattr(tensor.dtype, "name", tensor.dtype)
        inputs.append(TensorSpec(sanitize(str(name), taken), tuple(dims), str(dtype)))
    outputs = [sanitize(str(n), taken) for n in _output_names(model)]
    return inputs, outputs


def _layer_name(tensor: Any, fallback: str) -> str:
    """A Keras 3 tensor's name: the name of the layer that made it (``input_layer``,
    ``dense``), not the anonymous tensor's (``keras_tensor_9``) of a model built in memory."""
    history = getattr(tensor, "_keras_history", None)
    name = getattr(getattr(history, "operation", None), "name", None)
    if name and str(getattr(tensor, "name", "")).startswith("keras_tensor"):
        return str(name)
    return str(getattr(tensor, "name", None) or fallback)


def _output_names(model: Any) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    count = len(model.outputs)
    if len(names) != count:
        names = [_layer_name(t, f"output_{i}") for i, t in enumerate(model.outputs)]
    return names


def outputs_as_list(result: Any, model: Any) -> list[Any]:
    """Keras call results (tensor, list or dict) as a list in the model's output order."""
    if isinstance(result, dict):
        return [result[n] for n in _output_names(model)]
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def pack_inputs(model: Any, arrays: Sequence[Any]) -> Any:
    """Positional inputs (in ``model.inputs`` order) in the structure the model is called with:
    one tensor, a list, or a dict for Keras 3 models built on a dict of inputs."""
    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if isinstance(structure, dict):
        import tensorflow as tf

        return tf.nest.pack_sequence_as(structure, list(arrays))
    return arrays[0] if len(arrays) == 1 else list(arrays)


def call_model(model: Any, arrays: list[Any]) -> list[Any]:
    """Call a Keras model in inference mode on positional inputs."""
    return outputs_as_list(model(pack_inputs(model, arrays), training=False), model)


def weight_bytes(model: Any) -> int:
    """Bytes of all the model's weights (what the ONNX file will mostly consist of)."""
    total = 0
    for weight in getattr(model, "weights", None) or []:
        dtype = getattr(weight.dtype, "name", weight.dtype)
        total += int(np.prod(weight.shape)) * np.dtype(str(dtype)).itemsize
    return total


def _refuse_too_large(size: int, source: Path, what: str) -> None:
    if size > PROTOBUF_LIMIT - GRAPH_HEADROOM:
        raise ConversionError(
            f"{source}: {what} {size / 1e9:.2f} GB; a single ONNX graph holds at most 2 GB "
            f"(protobuf limit), even with its large weights in an external-data file: expected "
            f"under {(PROTOBUF_LIMIT - GRAPH_HEADROOM) / 1e9:.2f} GB"
        )


def _large_weights(model: Any) -> list[Any]:
    """The model's distinct variables of at least ``EXTERNAL_MIN_BYTES`` (for tf-keras, none
    of a recurrent layer: the native conversion reads those as constants)."""
    from portanet.export.convert.external import EXTERNAL_MIN_BYTES, nbytes
    from portanet.export.convert.lifted import recurrent_variables
    from portanet.export.convert.unfrozen import traces_unfrozen

    seen = recurrent_variables(model) if traces_unfrozen(model) else set()
    large = []
    for weight in model.weights:
        if nbytes(weight) >= EXTERNAL_MIN_BYTES and id(weight) not in seen:
            seen.add(id(weight))
            large.append(weight)
    return large


def streamed_bytes(model: Any) -> int:
    """Bytes of the weights a conversion writes to external data (0 for a model under the
    protobuf limit): they never enter a graph, so they cost no copies."""
    from portanet.export.convert.external import nbytes

    if weight_bytes(model) <= PROTOBUF_LIMIT - GRAPH_HEADROOM:
        return 0
    return sum(nbytes(w) for w in _large_weights(model))


def external_weights(loaded: LoadedKeras) -> Any:
    """The large variables to write as ONNX external data when the model's weights pass the
    protobuf limit (:mod:`portanet.export.convert.external`), else ``None``."""
    from portanet.export.convert.external import ExternalWeights

    model = loaded.model
    total = weight_bytes(model)
    if total <= PROTOBUF_LIMIT - GRAPH_HEADROOM:
        return None
    from portanet.export.convert.unfrozen import traces_unfrozen

    module = type(model).__module__
    keras3 = loaded.loader == "keras" and module.startswith("keras")
    if not keras3 and not (loaded.loader == "tf_keras" and traces_unfrozen(model)):
        raise ConversionError(
            f"{loaded.path}: the model's weights take {total / 1e9:.2f} GB, over the 2 GB a "
            f"single ONNX graph holds; portanet writes such models with external data from "
            f"Keras 3 and tf-keras models only, got one loaded with {loaded.loader}"
        )
    large = _large_weights(model)
    external = ExternalWeights(large)
    _refuse_too_large(
        total - external.nbytes, loaded.path, "the model's weights outside its large tensors take"
    )
    return external


def _nchw_names(
    inputs: list[TensorSpec], requested: Sequence[str] | None, source: Path
) -> list[str]:
    names = [n.strip() for n in requested or [] if n.strip()]
    by_name = {s.name: s for s in inputs}
    for name in names:
        spec = by_name.get(name)
        if spec is None:
            raise InputError(
                f"channels-first input: expected one of the inputs "
                f"{list(by_name)} of {source.name}, got {name!r}"
            )
        if spec.rank != 4:
            raise InputError(
                f"channels-first input {name!r}: expected an image input of rank 4 "
                f"(batch, height, width, channels), got shape {spec.shape}"
            )
    return names


def trace_keras(
    model: Any, inputs: Sequence[TensorSpec], native_rnns: Any = None, external: Any = None
) -> tuple[Any, Any]:
    """Trace ``model`` on ``inputs`` into a concrete function with its
    :class:`~portanet.export.convert.layertrace.LayerTrace` (which layer made which op and
    tensor). Recurrent layers become placeholders for native ONNX operators
    (:mod:`portanet.export.convert.rnn`), recorded in ``native_rnns`` when given — every trace
    does the same, so tensor names agree between conversion and layerwise comparison.
    ``external`` (:class:`~portanet.export.convert.external.ExternalWeights`) makes large
    variables extra inputs of the traced function (Keras 3's ``StatelessScope``; a tf-keras
    model is traced as it is and frozen around them, :mod:`portanet.export.convert.unfrozen`)."""
    tf = quiet_tensorflow()
    from portanet.export.convert.layertrace import trace_model
    from portanet.export.convert.rnn import NativeRnns
    from portanet.export.convert.unfrozen import traces_unfrozen

    signature = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in inputs]
    rnns = native_rnns if native_rnns is not None else NativeRnns()
    extra = external.specs() if external is not None and not traces_unfrozen(model) else []
    if external is not None:
        rnns.traced_inputs.update(id(v) for v in external.variables)
    # The first dimension is left open: grappler feeds placeholders of known shape with a
    # zero tensor of that shape, a second copy of every large weight. ensure_shape (an
    # Identity in ONNX) gives Keras the variable's own shape back.
    signature += [
        tf.TensorSpec((None, *shape[1:]) if shape else shape, tf.as_dtype(dtype), name=name)
        for name, shape, dtype in extra
    ]

    def forward(*args: Any) -> list[Any]:
        arrays = list(args[: len(inputs)])
        if not extra:
            return call_model(model, arrays)
        import keras

        mapping = [
            (variable, tf.ensure_shape(value, variable.shape))
            for variable, value in zip(external.variables, args[len(inputs) :], strict=False)
        ]
        with keras.StatelessScope(state_mapping=mapping):
            return call_model(model, arrays)

    return trace_model(model, forward, signature, rnns.substitute)


def freeze(concrete: Any, kept: Any = None) -> tuple[Any, list[str], list[str]]:
    """The frozen ``GraphDef`` of a concrete function (variables and captured constants become
    graph constants, functions inlined, control flow kept: native LSTM/GRU loops stay loops),
    with the names of its input and output tensors. The variables of ``kept``
    (:class:`~portanet.export.convert.external.ExternalWeights` of a tf-keras model) are not
    frozen but become the last inputs, in their order (:mod:`portanet.export.convert.unfrozen`).

    The steps of ``convert_variables_to_constants_v2`` without its last one, which builds a new
    concrete function from the frozen graph — about 80% of its time (ResNet50: 6.7 of 8.1 s)
    for an object the conversion only read the ``GraphDef`` and tensor names back from."""
    # TensorFlow internals: TF2 has no public graph freezing (tf2onnx's own loader uses the
    # same module); pinned by pyproject's tensorflow bound, checked by
    # tests/export/test_internals.py
    from tensorflow.python.framework.convert_to_constants import (
        _FunctionConverterDataInEager,
        _replace_variables_by_constants,
    )

    from portanet.export.convert import unfrozen

    placeholders = unfrozen.capture_names(concrete, kept.variables) if kept is not None else []
    data = _FunctionConverterDataInEager(
        func=concrete,
        lower_control_flow=False,
        aggressive_inlining=True,
        variable_names_denylist=[n for n in placeholders if n] or None,
    )
    graph_def, converted = _replace_variables_by_constants(converter_data=data)
    frozen = {id(concrete.graph.internal_captures[index]) for index in converted}
    frozen |= {id(t) for t in concrete.inputs if t.op.name in placeholders}
    inputs = [t.name for t in concrete.inputs if id(t) not in frozen]
    if kept is not None:
        inputs += unfrozen.reads_as_inputs(graph_def, placeholders, kept.specs())
    return graph_def, inputs, [t.name for t in concrete.outputs]


@dataclass(frozen=True)
class Converted:
    """What a conversion produced: the ``onnx.ModelProto`` (``proto``), its inputs as the graph
    takes them (``inputs``: shapes in the graph's layout), the channels-first inputs (``nchw``),
    the large weights left for an external-data file (``external``:
    :class:`~portanet.export.convert.external.ExternalWeights`, or ``None``) and the
    :class:`~portanet.export.convert.layertrace.LayerTrace` of the traced model (``trace``)."""

    proto: Any
    inputs: list[TensorSpec]
    nchw: list[str]
    external: Any
    trace: Any


def convert(
    loaded: LoadedKeras,
    *,
    opset: int = DEFAULT_OPSET,
    batch_size: int | None = None,
    inputs_as_nchw: Sequence[str] | None = None,
    cleanup: str = "tf2onnx",
    lift_weights: bool = True,
) -> Converted:
    """Convert a loaded Keras model to ONNX with readable I/O names (``loaded`` is not changed).

    ``batch_size`` fixes the batch dimension (dynamic ``batch`` otherwise); ``inputs_as_nchw``
    names image inputs that the ONNX graph takes channels-first; ``cleanup`` picks who cleans the
    graph (:data:`portanet.export.convert.lean.CLEANUPS`). With ``cleanup="onnxruntime"`` and
    ``lift_weights``, a Keras model's large weights stay out of the conversion and are put
    back by the clean-up (:mod:`portanet.export.convert.lifted`; the layerwise comparison turns
    it off: it needs tf2onnx's tensor names). Raises :class:`ConversionError` naming the Keras
    layer(s) when an op cannot be converted.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(
            f"opset: expected {MIN_OPSET}..{MAX_OPSET} (what tf2onnx writes), got {opset}"
        )
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size: expected a positive number of rows, got {batch_size}")
    if cleanup not in ("tf2onnx", "onnxruntime"):
        raise InputError(f"graph clean-up: expected tf2onnx or onnxruntime, got {cleanup!r}")
    quiet_tensorflow()
    from portanet.export.convert import tf2onnx_ext
    from portanet.export.convert.cleanup import basic_optimize
    from portanet.export.convert.lean import graph_def_to_onnx
    from portanet.export.convert.rnn import NativeRnns
    from portanet.export.convert.unfrozen import traces_unfrozen
    from portanet.export.preflight import release_memory

    model = loaded.model
    rnns = NativeRnns()
    inputs, output_names = keras_signature(model)
    nchw = _nchw_names(inputs, inputs_as_nchw, loaded.path)
    external = external_weights(loaded)
    from portanet.export.convert.lifted import lifted_for

    lifted = lifted_for(loaded, cleanup, lift_weights) if external is None else None
    traced_inputs = external if external is not None else lifted
    extra_names = [n for n, _, _ in traced_inputs.specs()] if traced_inputs is not None else []
    if batch_size is not None:
        inputs = [TensorSpec(s.name, (batch_size, *s.shape[1:]), s.dtype) for s in inputs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            concrete, trace = trace_keras(model, inputs, rnns, traced_inputs)
            unfrozen = traced_inputs if traces_unfrozen(model) else None
            try:
                graph_def, tf_inputs, tf_outputs = freeze(concrete, unfrozen)
            except ConversionError:
                if lifted is None or unfrozen is None:
                    raise
                lifted, extra_names = None, []  # a weight read another way: all kept in
                graph_def, tf_inputs, tf_outputs = freeze(concrete)
            tf2onnx_ext.strip_xla_markers(graph_def)
            renames = dict(zip(tf_inputs, [s.name for s in inputs] + extra_names, strict=False))
            renames.update(zip(tf_outputs, output_names, strict=False))
            del concrete
            with tf2onnx_ext.captured_log() as log:
                proto = graph_def_to_onnx(
                    graph_def,
                    input_names=tf_inputs,
                    output_names=tf_outputs,
                    opset=opset,
                    inputs_as_nchw=[f"{n}:0" for n in nchw] or None,
                    tensors_to_rename=renames,
                    custom_op_handlers=rnns.handlers(),
                    cleanup=cleanup,
                )
            del graph_def
    except (InputError, ConversionError):
        raise
    except Exception as exc:  # tf2onnx / TensorFlow raise many types
        raise ConversionError(
            f"{loaded.path}: tf2onnx could not convert the model: {first_line(exc)}"
        ) from exc
    tf2onnx_ext.refuse_unconvertible(proto, opset, trace, log, loaded.path)
    expected = [f"{s.name}:0" for s in inputs] + [f"{n}:0" for n in extra_names]
    got = [i.name for i in proto.graph.input if i.name not in extra_names]
    if sorted(got) != sorted(s.name for s in inputs) or sorted(tf_inputs) != sorted(expected):
        raise ConversionError(
            f"{loaded.path}: expected the ONNX graph to take exactly the "
            f"model's inputs {[s.name for s in inputs]}, got {got}"
        )
    if len(tf_outputs) != len(output_names):
        raise ConversionError(
            f"{loaded.path}: expected {len(output_names)} outputs "
            f"{output_names}, the converted graph has {len(tf_outputs)}"
        )
    _name_batch_dimension(proto, dynamic=batch_size is None)
    if external is None and cleanup == "onnxruntime":
        release_memory()  # the TensorFlow graphs before onnxruntime's session
        proto = basic_optimize(proto, lifted)  # lifted weights put back as initializers
        left = [i.name for i in proto.graph.input if i.name in extra_names]
        if left:
            raise ConversionError(
                f"{loaded.path}: expected the model's weights {left[:3]} back in the graph as "
                f"initializers, got them as graph inputs; export with --graph-cleanup tf2onnx"
            )
    _refuse_too_large(proto.ByteSize(), loaded.path, "the converted ONNX model takes")
    inputs = [
        TensorSpec(s.name, (s.shape[0], s.shape[3], s.shape[1], s.shape[2]), s.dtype)
        if s.name in nchw
        else s
        for s in inputs
    ]
    return Converted(proto, inputs, nchw, external, trace)


def _name_batch_dimension(proto: Any, *, dynamic: bool) -> None:
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dynamic and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
