"""tf-keras models over 2 GB: large variables left unfrozen, their reads made graph inputs.

Keras 3 models trace their large variables as extra function inputs through ``StatelessScope``
(:mod:`portanet.export.convert.external`); tf-keras has no stateless call. But a tf-keras model
traced into a ``tf.function`` does not hold its variables' values either: each variable is a
captured *resource* placeholder that ``ReadVariableOp`` (or, for an ``Embedding`` table,
``ResourceGather``) reads. So for a tf-keras model:

* the model is traced as it is, and frozen with the large variables on the freezer's deny list
  (:func:`capture_names` finds each variable's captured placeholder): only the small ones become
  constants, the large ones are never copied into the ``GraphDef``;
* :func:`reads_as_inputs` turns each large variable's resource placeholder into a float
  placeholder of the variable's dtype (first dimension left open, as for Keras 3: grappler would
  otherwise feed it a zero tensor of the full shape) followed by an ``EnsureShape``, its
  ``ReadVariableOp`` reads into ``Identity`` nodes and its ``ResourceGather`` lookups into
  ``GatherV2`` — the rewrite TensorFlow's freezer does for constants;
* from there the graph is the one a Keras 3 model gives: the large weights are graph inputs,
  written straight from the variables into ``<model>.onnx.data`` by
  :class:`~portanet.export.convert.external.ExternalWeights`.

A large variable read any other way (passed into a loop or function call) is refused by name.
Export side only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portanet.errors import ConversionError

#: Ops that read a variable and have a plain-tensor equivalent.
READ_OPS = ("ReadVariableOp", "ResourceGather")


def traces_unfrozen(model: Any) -> bool:
    """Whether ``model``'s large variables are kept out of the graph by freezing around them
    (tf-keras, this module) rather than by Keras 3's ``StatelessScope``."""
    return type(model).__module__.startswith("tf_keras")


def capture_names(concrete: Any, variables: Sequence[Any]) -> list[str | None]:
    """The op name of the placeholder each variable is captured as in ``concrete``'s graph
    (``None`` for a variable the traced call never reads)."""
    by_handle = {id(outer): inner.op.name for outer, inner in concrete.graph.captures}
    return [by_handle.get(id(getattr(v, "handle", None))) for v in variables]


def reads_as_inputs(
    graph_def: Any,
    placeholders: Sequence[str | None],
    specs: Sequence[tuple[str, tuple[int, ...], str]],
) -> list[str]:
    """Rewrite ``graph_def`` (frozen with the ``placeholders`` left as resources) so each large
    variable is a float placeholder read as a plain tensor; ``specs`` are the variables'
    (input name, shape, dtype) as :meth:`ExternalWeights.specs` gives them. Returns the
    placeholders' tensor names, in the order of ``specs``."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph_def.node}
    names = []
    for placeholder, (input_name, shape, dtype) in zip(placeholders, specs, strict=True):
        tf_dtype = tf.as_dtype(dtype).as_datatype_enum
        node = nodes.get(placeholder) if placeholder is not None else None
        if node is None:  # never read: an input nothing uses, as Keras 3 gives it
            placeholder = None
            node = graph_def.node.add(name=input_name, op="Placeholder")
        else:
            node.name = input_name
            node.ClearField("attr")
        node.attr["dtype"].type = tf_dtype
        open_shape = [None, *shape[1:]] if shape else []
        node.attr["shape"].shape.CopyFrom(tf.TensorShape(open_shape).as_proto())
        shaped = graph_def.node.add(name=f"{input_name}/portanet_shape", op="EnsureShape")
        shaped.input.append(input_name)
        shaped.attr["T"].type = tf_dtype
        shaped.attr["shape"].shape.CopyFrom(tf.TensorShape(list(shape)).as_proto())
        if placeholder is not None:
            _rewrite_readers(graph_def, placeholder, shaped.name, tf_dtype, input_name)
        names.append(f"{input_name}:0")
    return names


def _rewrite_readers(
    graph_def: Any, placeholder: str, shaped: str, tf_dtype: int, input_name: str
) -> None:
    """Turn every reader of the resource ``placeholder`` into a reader of ``shaped``."""
    for node in list(graph_def.node):
        for index, name in enumerate(node.input):
            if name == f"^{placeholder}":  # an ordering edge only: kept on the new input
                node.input[index] = f"^{input_name}"
        uses = [i for i, name in enumerate(node.input) if name in (placeholder, f"{placeholder}:0")]
        if not uses:
            continue
        if node.op not in READ_OPS or uses != [0]:
            raise ConversionError(
                f"a large weight ({input_name}, kept out of the graph of a tf-keras model over "
                f"2 GB) is read by the {node.op} node {node.name!r}: expected only "
                f"{' or '.join(READ_OPS)} reads, which become reads of a graph input"
            )
        if node.op == "ReadVariableOp":
            node.op = "Identity"
            node.ClearField("attr")
            node.attr["T"].type = tf_dtype
            node.input[0] = shaped
            continue
        _gather(graph_def, node, shaped, input_name)


def _gather(graph_def: Any, node: Any, shaped: str, input_name: str) -> None:
    """``ResourceGather(resource, indices)`` → ``GatherV2(shaped, indices, 0)`` (what
    TensorFlow's freezer does for a frozen table)."""
    import tensorflow as tf

    if node.attr["batch_dims"].i != 0:
        raise ConversionError(
            f"the ResourceGather node {node.name!r} reads the large weight {input_name} with "
            f"batch_dims={node.attr['batch_dims'].i}: expected 0"
        )
    indices, dtype, index_dtype = node.input[1], node.attr["dtype"].type, node.attr["Tindices"].type
    axis = graph_def.node.add(name=f"{node.name}/portanet_axis", op="Const")
    axis.attr["dtype"].type = index_dtype
    axis.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(0, dtype=tf.as_dtype(index_dtype)))
    control = [i for i in node.input[2:] if i.startswith("^")]
    node.ClearField("input")
    node.input.extend([shaped, indices, axis.name, *control])
    node.op = "GatherV2"
    node.ClearField("attr")
    node.attr["Tparams"].type = dtype
    node.attr["Tindices"].type = index_dtype
    node.attr["Taxis"].type = index_dtype
    node.attr["batch_dims"].i = 0
