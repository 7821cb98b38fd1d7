"""Graph clean-up after conversion: onnxruntime's offline *basic* optimization.

tf2onnx's own optimizers copy the whole graph before each of them on every pass
(:mod:`portanet.export.convert.lean`), so portanet converts without them and lets onnxruntime
clean the graph instead: constant folding, redundant-node elimination, the transpose optimizer
(the NHWC↔NCHW pairs tf2onnx leaves around every convolution) and the fusions of its *basic*
level, which writes only standard ONNX operators (the *extended* level would write
``com.microsoft`` ones that other runtimes do not have). The result is read back and refused if
it holds any operator outside the standard domains; the parity gate then runs on it.

Export side only (onnx and onnxruntime).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Operator domains a cleaned graph may use: the standard ONNX ones.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def every_node(graph: Any) -> Iterator[Any]:
    """Every node of an ONNX ``graph``, those of its subgraphs (``If``/``Loop``/``Scan``
    bodies, at any depth) included, each graph's own nodes before its subgraphs'."""
    import onnx

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from every_node(attribute.g)
            for sub in attribute.graphs:
                yield from every_node(sub)


def non_standard_ops(proto: Any) -> list[str]:
    """``domain.op`` of every node (subgraphs included) outside :data:`STANDARD_DOMAINS`."""
    return [
        f"{node.domain}.{node.op_type}"
        for node in every_node(proto.graph)
        if node.domain not in STANDARD_DOMAINS
    ]


def basic_optimize(proto: Any) -> Any:
    """``proto`` after onnxruntime's offline basic-level optimization, with its inputs, outputs,
    opset and metadata unchanged; ``proto`` itself when onnxruntime's result would use
    non-standard operators (then the graph is written as tf2onnx made it).

    For graphs that fit in one protobuf message (the >2 GB ones keep their large weights outside
    and are cleaned up by onnxruntime when they are loaded)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="portanet-cleanup-") as folder:
        target = Path(folder) / "basic.onnx"
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        cleaned = onnx.load(str(target))
    if non_standard_ops(cleaned):
        return proto
    del cleaned.opset_import[:]
    cleaned.opset_import.extend(proto.opset_import)
    for field in ("ir_version", "producer_name", "producer_version", "doc_string"):
        setattr(cleaned, field, getattr(proto, field))
    del cleaned.metadata_props[:]
    cleaned.metadata_props.extend(proto.metadata_props)
    return cleaned
