"""What portanet adds to tf2onnx, through tf2onnx's own extension points (its source is untouched).

* Op handlers registered with tf2onnx's ``@tf_op`` decorator for TensorFlow ops tf2onnx 1.17 has
  no conversion for: ``Erfc`` (exact GELU, ``tf.nn.gelu(approximate=False)`` =
  ``0.5·x·erfc(−x/√2)``) as ``1 − Erf(x)``; ``Expm1`` (CELU) as ``Exp(x) − 1``;
  ``Log1p`` as ``Log(1 + x)``. A handler is registered only when tf2onnx has none of its own.
* :func:`strip_xla_markers`: Keras 3 runs grouped convolutions (ConvNeXt's depthwise 7×7) in a
  nested ``tf.function(jit_compile=True)``; its ``_XlaMustCompile``/``_noinline`` markers stop
  TensorFlow's graph optimizer — which tf2onnx runs itself — from inlining the function, and
  tf2onnx cannot convert a function call. Removing the markers from the frozen ``GraphDef`` lets
  the body be inlined and converted (an ONNX ``Conv`` with ``group``).
* :func:`captured_log`: tf2onnx logs what it could not convert and carries on; the records are
  collected (and kept off the terminal) so portanet can refuse with names instead.
* :func:`unconvertible_nodes`: the nodes of a converted graph that are not ONNX operators at the
  target opset — the ops tf2onnx left unconverted; :func:`refuse_unconvertible` names their
  Keras layers in the refusal.

Importing this module registers the handlers. Export side only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tf2onnx import constants, utils
from tf2onnx.handler import tf_op

from portanet.errors import ConversionError

#: Markers that keep a TensorFlow function from being inlined.
NOINLINE_ATTRS = ("_XlaMustCompile", "_noinline")


def _has_own_handler(op: str) -> bool:
    return any(op in by_name for by_name in tf_op.get_opsets().get(constants.ONNX_DOMAIN, []))


def _unary_rewrite(ctx: Any, node: Any, inner: str, outer: str, constant_first: bool) -> None:
    """Turn ``node`` (one input) into ``outer(1, inner(x))`` or ``outer(inner(x), 1)``."""
    source = node.input[0]
    dtype = ctx.get_dtype(source)
    first = ctx.make_node(
        inner, [source], op_name_scope=node.name, shapes=[ctx.get_shape(source)], dtypes=[dtype]
    )
    one = ctx.make_const(
        utils.make_name(f"{node.name}_one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype))
    )
    node.type = outer
    pair = [one.output[0], first.output[0]] if constant_first else [first.output[0], one.output[0]]
    ctx.replace_inputs(node, pair)


class Erfc:
    """``erfc(x) = 1 − erf(x)`` (ONNX ``Erf`` exists from opset 9)."""

    @classmethod
    def version_9(cls, ctx: Any, node: Any, **kwargs: Any) -> None:
        _unary_rewrite(ctx, node, "Erf", "Sub", constant_first=True)


class Expm1:
    """``expm1(x) = exp(x) − 1``."""

    @classmethod
    def version_6(cls, ctx: Any, node: Any, **kwargs: Any) -> None:
        _unary_rewrite(ctx, node, "Exp", "Sub", constant_first=False)


class Log1p:
    """``log1p(x) = log(1 + x)``."""

    @classmethod
    def version_6(cls, ctx: Any, node: Any, **kwargs: Any) -> None:
        one_plus = node.input[0]
        dtype = ctx.get_dtype(one_plus)
        one = ctx.make_const(
            utils.make_name(f"{node.name}_one"),
            np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)),
        )
        added = ctx.make_node(
            "Add",
            [one.output[0], one_plus],
            op_name_scope=node.name,
            shapes=[ctx.get_shape(one_plus)],
            dtypes=[dtype],
        )
        node.type = "Log"
        ctx.replace_inputs(node, [added.output[0]])


#: The handlers portanet registers, by TensorFlow op name.
HANDLERS = {"Erfc": Erfc, "Expm1": Expm1, "Log1p": Log1p}


def _register() -> tuple[str, ...]:
    registered = []
    for op, handler in HANDLERS.items():
        if not _has_own_handler(op):  # a future tf2onnx's own conversion wins
            tf_op(op)(handler)
            registered.append(op)
    return tuple(registered)


#: The ops registered by this import.
REGISTERED = _register()


def strip_xla_markers(graph_def: Any) -> int:
    """Remove the no-inline markers from a ``GraphDef``'s nodes and functions; returns how many."""
    removed = 0
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        for key in NOINLINE_ATTRS:
            if key in function.attr:
                del function.attr[key]
                removed += 1
        nodes.extend(function.node_def)
    for node in nodes:
        for key in NOINLINE_ATTRS:
            if key in node.attr:
                del node.attr[key]
                removed += 1
    return removed


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class ConversionLog:
    """What tf2onnx logged at WARNING or above during one conversion."""

    records: list[logging.LogRecord]

    @property
    def messages(self) -> list[str]:
        """The records' messages (first line each)."""
        return [r.getMessage().splitlines()[0] for r in self.records]

    @property
    def failed_nodes(self) -> list[str]:
        """TensorFlow nodes whose handler raised (tf2onnx goes on without them)."""
        return [
            str(r.args[0] if isinstance(r.args, tuple) else r.args)
            for r in self.records
            if r.msg.startswith("Failed to convert node") and r.args
        ]


@contextlib.contextmanager
def captured_log() -> Iterator[ConversionLog]:
    """Collect tf2onnx's log records during the block instead of printing them."""
    logger = logging.getLogger("tf2onnx")
    collector = _Collector()
    saved = (logger.propagate, logger.level)
    logger.addHandler(collector)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        yield ConversionLog(collector.records)
    finally:
        logger.removeHandler(collector)
        logger.propagate, level = saved
        logger.setLevel(level)


def unconvertible_nodes(proto: Any, opset: int) -> list[tuple[str, str]]:
    """``(node name, op type)`` of every node (subgraphs included) that is not an ONNX operator
    at ``opset`` — what tf2onnx left in TensorFlow form."""
    import onnx

    from portanet.export.convert.cleanup import every_node

    imported = {o.domain for o in proto.opset_import} | {"", "ai.onnx"}
    found: list[tuple[str, str]] = []
    for node in every_node(proto.graph):
        if node.domain in ("", "ai.onnx"):
            try:
                onnx.defs.get_schema(node.op_type, opset, "")
            except onnx.defs.SchemaError:
                found.append((node.name, node.op_type))
        elif node.domain not in imported:
            found.append((node.name, f"{node.domain}.{node.op_type}"))
    return found


def refuse_unconvertible(proto: Any, opset: int, trace: Any, log: Any, source: Path) -> None:
    """Raise :class:`~portanet.errors.ConversionError` naming the Keras layer(s) (from
    ``trace``) of every op tf2onnx left unconverted in ``proto``; nothing when there is none."""
    bad = unconvertible_nodes(proto, opset)
    if not bad:
        return
    by_op: dict[str, list[str]] = {}
    for node, op in bad:
        call = trace.layer_of(node)
        where = f"layer {call.label}" if call else f"node {node!r} (outside any Keras layer)"
        if where not in by_op.setdefault(op, []):
            by_op[op].append(where)
    parts = []
    for op, places in by_op.items():
        shown = ", ".join(places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")
        parts.append(f"TensorFlow op {op} in {shown}")
    failed = f" (tf2onnx reported failures for {log.failed_nodes[:3]})" if log.failed_nodes else ""
    raise ConversionError(
        f"{source}: cannot convert to ONNX opset {opset}: expected every op "
        f"to have a tf2onnx conversion, got none for "
        + "; ".join(parts)
        + failed
        + "; nothing was written"
    )
