"""Which Keras layer made which TensorFlow op and tensor: hooks around every layer's ``call``.

While a model is traced into a ``tf.function`` (or run eagerly), every layer — nested models
included, to any depth — reports the tensors it returns and the ops it created. That gives

* the layer of any TensorFlow node in the frozen graph (so an op tf2onnx cannot convert is
  reported with the Keras layer it comes from),
* each layer's output tensor names in graph order (so the layerwise comparison finds the ONNX
  tensor tf2onnx made from it; tf2onnx keeps TensorFlow's tensor names),
* each layer's output values when the model runs eagerly (the Keras side of that comparison).

The hooks are instance attributes set for the duration of one call and removed afterwards; the
model's classes and the libraries are never patched. Export side only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Called after every layer call with (path, layer, positional args, outputs, graph, first op).
CallHook = Callable[[str, Any, tuple, Any, Any, int], None]
#: Called before a layer call while tracing a graph with (path, layer, args, kwargs): the
#: outputs to use instead of the layer's own call, or ``None`` to run it.
Substitute = Callable[[str, Any, tuple, dict], Any]

_TF2ONNX_SUFFIX = re.compile(r"__\d+$")


@dataclass
class LayerCall:
    """One call of one layer during a trace, in the order the calls completed (graph order)."""

    path: str
    class_name: str
    layer: Any
    outputs: list[str] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)
    container: bool = False
    occurrence: int = 0

    @property
    def key(self) -> str:
        """``path`` for a layer's first call, ``path#2`` for its second, and so on."""
        return self.path if self.occurrence == 0 else f"{self.path}#{self.occurrence + 1}"

    @property
    def label(self) -> str:
        """``'path' (ClassName)`` for messages."""
        return f"{self.key!r} ({self.class_name})"


@dataclass
class LayerTrace:
    """The layer calls of one traced model and the layer of every op they created."""

    calls: list[LayerCall]
    op_layer: dict[str, LayerCall]

    def layer_of(self, node_name: str) -> LayerCall | None:
        """The layer call that created a TensorFlow node (or the tf2onnx node derived from it).

        tf2onnx names the nodes it adds ``<tf node>__<n>`` and inlined function bodies live
        under ``<call node>/...``; both are traced back to the TensorFlow node they came from.
        """
        name = _TF2ONNX_SUFFIX.sub("", node_name.split(":")[0])
        while name:
            if name in self.op_layer:
                return self.op_layer[name]
            name = name.rpartition("/")[0]
        return None

    @property
    def leaves(self) -> list[LayerCall]:
        """Calls of layers that are not themselves models, in graph order."""
        return [c for c in self.calls if not c.container]


def is_container(layer: Any) -> bool:
    """True for nested models (anything with a ``layers`` list of its own)."""
    return isinstance(getattr(layer, "layers", None), list)


def walk_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every layer of ``model`` with its ``/``-joined path, nested models first then their
    layers, depth first (``model`` itself excluded)."""
    for layer in getattr(model, "layers", None) or []:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if is_container(layer):
            yield from walk_layers(layer, f"{path}/")


@contextlib.contextmanager
def hooked(model: Any, on_call: CallHook, substitute: Substitute | None = None) -> Iterator[None]:
    """Wrap the ``call`` of every layer of ``model`` (recursively) while the block runs; while
    a graph is traced, ``substitute`` may replace a layer's computation."""
    import tensorflow as tf

    def wrap(original: Any, path: str, layer: Any) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
            start = len(graph.get_operations()) if graph is not None else 0
            outputs = None
            if substitute is not None and graph is not None:
                outputs = substitute(path, layer, args, kwargs)
            if outputs is None:
                outputs = original(*args, **kwargs)
            on_call(path, layer, args, outputs, graph, start)
            return outputs

        return wrapped

    installed: list[Any] = []
    try:
        for path, layer in walk_layers(model):
            if any(layer is done for done in installed):
                continue  # a layer shared by two nested models reports under its first path
            object.__setattr__(layer, "call", wrap(layer.call, path, layer))
            installed.append(layer)
        yield
    finally:
        for layer in installed:
            with contextlib.suppress(AttributeError):
                object.__delattr__(layer, "call")


def _tensors(value: Any) -> list[Any]:
    import tensorflow as tf

    return [t for t in tf.nest.flatten(value) if isinstance(t, tf.Tensor)]


def trace_model(
    model: Any,
    forward: Callable[..., Any],
    signature: list[Any],
    substitute: Substitute | None = None,
) -> tuple[Any, LayerTrace]:
    """Trace ``forward`` (which calls ``model``) into a concrete function, recording layers
    (``substitute``: see :func:`hooked`)."""
    import tensorflow as tf

    calls: list[LayerCall] = []
    op_layer: dict[str, LayerCall] = {}
    seen: dict[str, int] = {}
    top: list[Any] = []

    def on_call(path: str, layer: Any, args: tuple, outputs: Any, graph: Any, start: int) -> None:
        if graph is None or not top or graph is not top[0]:
            return  # eager, or inside a loop body: not a tensor of the traced graph
        occurrence = seen.get(path, 0)
        seen[path] = occurrence + 1
        call = LayerCall(
            path, type(layer).__name__, layer, container=is_container(layer), occurrence=occurrence
        )
        call.outputs = [t.name for t in _tensors(outputs) if getattr(t, "graph", None) is graph]
        call.inputs = _tensors(args[0]) if args else []
        for op in graph.get_operations()[start:]:
            op_layer.setdefault(op.name, call)  # inner layers complete first and keep theirs
        calls.append(call)

    def traced(*args: Any) -> Any:
        top[:] = [tf.compat.v1.get_default_graph()]
        return forward(*args)

    with hooked(model, on_call, substitute):
        concrete = tf.function(traced).get_concrete_function(*signature)
    return concrete, LayerTrace(calls, op_layer)


def record_outputs(
    model: Any, run: Callable[[], Any], keep: Callable[[str], bool] | None = None
) -> dict[str, list[Any]]:
    """Run ``run()`` eagerly and return every layer call's outputs as numpy arrays, keyed like
    :attr:`LayerCall.key`. ``keep(key)`` limits which calls are stored."""
    import numpy as np

    values: dict[str, list[Any]] = {}
    seen: dict[str, int] = {}

    def on_call(path: str, layer: Any, args: tuple, outputs: Any, graph: Any, start: int) -> None:
        if graph is not None:
            return
        occurrence = seen.get(path, 0)
        seen[path] = occurrence + 1
        key = path if occurrence == 0 else f"{path}#{occurrence + 1}"
        if keep is None or keep(key):
            values[key] = [np.asarray(t) for t in _tensors(outputs)]

    with hooked(model, on_call):
        run()
    return values
