"""Graph clean-up after conversion: onnxruntime's offline *basic* optimization.

tf2onnx's own optimizers copy the whole graph before each of them on every pass
(:mod:`portanet.export.convert.lean`), so portanet converts without them and lets onnxruntime
clean the graph instead: constant folding, redundant-node elimination, the transpose optimizer
(the NHWC↔NCHW pairs tf2onnx leaves around every convolution) and the fusions of its *basic*
level, which writes only standard ONNX operators (the *extended* level would write
``com.microsoft`` ones that other runtimes do not have). The result is read back and refused if
it holds any operator outside the standard domains; the parity gate then runs on it.

A graph whose large weights were lifted out of the conversion
(:mod:`portanet.export.convert.lifted`) gets them back here: written to a temporary
external-data file that onnxruntime reads by path, its result written with external data as
well and read back into one self-contained graph, where constant folding has turned the
``Transpose``/``Reshape`` tf2onnx put on each non-constant kernel into a plain initializer.

Export side only (onnx and onnxruntime).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Operator domains a cleaned graph may use: the standard ONNX ones.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
#: onnxruntime session option: write the optimized model's initializers to this file (beside it).
EXTERNAL_FILE_KEY = "session.optimized_model_external_initializers_file_name"


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


def basic_optimize(proto: Any, weights: Any = None) -> Any:
    """``proto`` after onnxruntime's offline basic-level optimization, with its inputs, outputs,
    opset and metadata unchanged; ``proto`` itself when onnxruntime's result would use
    non-standard operators (then the graph is written as tf2onnx made it).

    ``weights`` (:class:`~portanet.export.convert.external.ExternalWeights`), when given, are
    graph inputs of ``proto`` standing for large variables (:mod:`portanet.export.convert.lifted`):
    they are written from the variables into a temporary external-data file beside the graph
    (``proto`` gets the initializers), onnxruntime reads both by path and writes its result with
    external data too, and the graph returned holds them as ordinary initializers — one
    self-contained model, with no whole copy of the weights in a serialized message on the way.

    For graphs that fit in one protobuf message (the >2 GB ones keep their large weights outside
    and are cleaned up by onnxruntime when they are loaded)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="portanet-cleanup-") as name:
        folder = Path(name)
        target = folder / "basic.onnx"
        options.optimized_model_filepath = str(target)
        source: Any = None
        if weights is not None:
            source = folder / "traced.onnx"
            weights.write(proto, source)  # streamed from the variables, a chunk at a time
            source.write_bytes(proto.SerializeToString())
            options.add_session_config_entry(EXTERNAL_FILE_KEY, f"{target.name}.data")
        model = str(source) if source is not None else proto.SerializeToString()
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        del model
        cleaned = onnx.load(str(target))  # external data read back into initializers
        if non_standard_ops(cleaned):
            if source is None:
                return proto
            del cleaned
            cleaned = onnx.load(str(source))  # tf2onnx's graph, its weights read back
    del cleaned.opset_import[:]
    cleaned.opset_import.extend(proto.opset_import)
    for field in ("ir_version", "producer_name", "producer_version", "doc_string"):
        setattr(cleaned, field, getattr(proto, field))
    del cleaned.metadata_props[:]
    cleaned.metadata_props.extend(proto.metadata_props)
    return cleaned
