"""A frozen TensorFlow ``GraphDef`` to ONNX in memory a small multiple of the weights.

tf2onnx's ``convert.from_graph_def`` imports the graph, freezes it again, runs grappler, imports
the result, and then runs its optimizer loop, which ``copy.deepcopy``s the whole graph before
every optimizer on every pass (unless ``large_model=True``): about 30× a network's weights at the
peak (ResNet50: 5.6 GB for 98 MB of weights). This module walks the same public steps of the
pinned tf2onnx (1.17) without the copies:

* grappler once (``tf_loader.tf_optimize``: inlines functions, prunes to the outputs) on the
  already frozen graph — portanet's graph has no variables left to freeze;
* the large constants are lifted out of the ``GraphDef`` before TensorFlow imports it
  (``tf_utils.compress_graph_def``, tf2onnx's own ``large_model`` step), so TensorFlow's graph
  does not hold a second copy of every weight;
* ``tfonnx.process_tf_graph`` with those constants and portanet's handlers;
* tf2onnx's optimizers run without the per-optimizer copies (``catch_errors=False``, what
  tf2onnx itself does for ``large_model``): all of them by default, or — the leaner
  ``cleanup="onnxruntime"`` — only the three that remove what its conversions leave behind,
  the graph then cleaned by onnxruntime's offline *basic* optimization
  (:mod:`portanet.export.convert.cleanup`), which keeps only standard ONNX ops;
* ``make_model`` without tf2onnx's zip storage, so every tensor stays a plain initializer (the
  >2 GB models never reach here with their large weights: they are graph inputs, see
  :mod:`portanet.export.convert.external`).

Export side only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def graph_def_to_onnx(
    graph_def: Any,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int,
    inputs_as_nchw: Sequence[str] | None = None,
    tensors_to_rename: dict[str, str] | None = None,
    custom_op_handlers: dict[str, Any] | None = None,
    cleanup: str = "tf2onnx",
) -> Any:
    """Convert a frozen ``GraphDef`` (no variables) to an ``onnx.ModelProto``.

    Arguments mean what they mean for ``tf2onnx.convert.from_graph_def``. ``graph_def`` itself
    is left as it is (grappler works on a copy). Ops tf2onnx cannot convert are left in the
    graph (tf2onnx's ``continue_on_error``) for the caller to name.

    When one of tf2onnx's optimizers fails on the copy-free path (tf2onnx 1.17's transpose
    optimizer on a scalar bias, as in MobileNetV3), the graph it was rewriting is half-changed:
    the conversion runs once more with tf2onnx's own rollback (a copy of the graph before each
    optimizer; the failing optimizer is skipped), so only such models pay for the copies.
    """

    def attempt(catch_errors: bool) -> Any:
        return _convert(
            graph_def,
            input_names=input_names,
            output_names=output_names,
            opset=opset,
            inputs_as_nchw=inputs_as_nchw,
            tensors_to_rename=tensors_to_rename,
            custom_op_handlers=custom_op_handlers,
            cleanup=cleanup,
            catch_errors=catch_errors,
        )

    try:
        return attempt(catch_errors=False)
    except _OptimizerFailed:
        return attempt(catch_errors=True)


class _OptimizerFailed(Exception):
    """One of tf2onnx's optimizers raised on the copy-free path."""


def _convert(
    graph_def: Any,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int,
    inputs_as_nchw: Sequence[str] | None,
    tensors_to_rename: dict[str, str] | None,
    custom_op_handlers: dict[str, Any] | None,
    cleanup: str,
    catch_errors: bool,
) -> Any:
    import tensorflow as tf
    from tf2onnx import optimizer, tf_loader
    from tf2onnx.tf_utils import compress_graph_def
    from tf2onnx.tfonnx import process_tf_graph

    inputs, outputs = list(input_names), list(output_names)
    with tf.device("/cpu:0"), tf.Graph().as_default():  # grappler wants graph mode
        optimized = tf_loader.tf_optimize(inputs, outputs, graph_def)
    constants = compress_graph_def(optimized)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(optimized, name="")
        del optimized
        graph = process_tf_graph(
            tf_graph,
            continue_on_error=True,
            opset=opset,
            custom_op_handlers=custom_op_handlers,
            inputs_as_nchw=list(inputs_as_nchw or []) or None,
            input_names=inputs,
            output_names=outputs,
            const_node_values=constants,
            tensors_to_rename=tensors_to_rename,
        )
    constants.clear()
    try:
        graph = optimizer.optimize_graph(
            graph, catch_errors=catch_errors, optimizers=_optimizers(cleanup)
        )
    except Exception as exc:  # any optimizer's own error: retried with tf2onnx's rollback
        if catch_errors:
            raise
        raise _OptimizerFailed(str(exc)) from exc
    return graph.make_model("converted by portanet (tf2onnx)")


#: How the converted graph is cleaned up: by tf2onnx's own optimizers (every one, in its order,
#: without its per-optimizer copies) — tensor names stay TensorFlow's, which the layerwise
#: comparison needs — or by onnxruntime's basic offline optimization after only the tf2onnx
#: optimizers conversions need (leaner: about a third less peak memory; onnxruntime renames
#: some tensors, so the layerwise table finds fewer layers).
CLEANUPS = ("tf2onnx", "onnxruntime")


def _optimizers(cleanup: str) -> dict[str, Any] | None:
    """tf2onnx's optimizers to run: ``None`` means all of them (tf2onnx's default)."""
    if cleanup == "tf2onnx":
        return None
    from tf2onnx.optimizer import BackToBackOptimizer, IdentityOptimizer, LoopOptimizer

    # Conversions such as TensorListFromTensor (inside recurrent loops) leave two-input
    # Identity nodes that only these remove; none of them copies or rewrites weights.
    return {
        "loop_optimizer": LoopOptimizer,
        "remove_identity": IdentityOptimizer,
        "remove_back_to_back": BackToBackOptimizer,
    }
