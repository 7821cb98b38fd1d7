"""Where a model's time goes, per node: onnxruntime's own profiler on the float model and on an
int8 model quantized from it, each profiled node attributed back to the float graph's
convolution or matrix product it computes — so the int8 search can keep in float the nodes whose
int8 kernel is not faster than their float one (:func:`slow_nodes`).

onnxruntime profiles the graph it *runs*, after its fusions, not the file's nodes: a float
convolution with its activation becomes one ``Conv`` named after the activation's output plus
``_nchwc`` (the NCHWc layout), a QDQ convolution becomes a ``QLinearConv`` named
``<conv node>_token_<n>``, a MatMul and its Add a ``FusedGemm`` named
``fused <MatMul>/MatMulAddFusion``, a standalone quantize or dequantize node
``<tensor>_QuantizeLinear``. Every profiled name is therefore matched to the *longest* node or
tensor name of the float graph it contains, and that node to the convolution or matrix product
it belongs to (:func:`owners`): an activation to the layer it follows, a quantize/dequantize
node to the layer that writes its tensor (or, for a graph input, the layer that reads it), a
transpose to the layer it feeds. What matches nothing (onnxruntime's own layout reorders) stays
unattributed and is reported as such. Sessions keep onnxruntime's memory arena, as a deployed
session does: without it, a fresh process's first runs pay page faults for every large buffer
(measured: the MobileNet's first float convolution profiled 800 µs instead of 200 µs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet.runtime.providers import session_options

Feeds = dict[str, np.ndarray]
#: Operators timed per node and candidates for staying float.
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Single-input operators onnxruntime fuses into the layer before them (activation, scaling).
FOLLOWERS = (
    "Relu",
    "Clip",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "BatchNormalization",
)
#: Layout operators attributed to the layer they feed (onnxruntime folds them into its layout).
LAYOUT_OPS = ("Transpose",)
#: Profiled runs dropped at the start (allocations, first-run kernel selection).
WARMUP_RUNS = 3
#: Profiled runs per model after the warm-up.
RUNS = 20
#: Node and tensor names shorter than this match a profiled name only when equal to it.
MIN_MATCH = 4
#: Time not attributed to any node of the float graph (layout reorders and the like).
UNATTRIBUTED = ""


@dataclass
class NodeTime:
    """One convolution or matrix product of the float graph: the median time per run of what
    onnxruntime runs for it in the float model and in the int8 model (its fused int8 kernel and
    the quantize/dequantize nodes around it), in microseconds."""

    node: str
    op: str
    float_us: float
    int8_us: float

    @property
    def speedup(self) -> float:
        """Float time over int8 time (above 1: int8 is faster)."""
        return self.float_us / self.int8_us if self.int8_us > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node": self.node,
            "op": self.op,
            "float_us": round(self.float_us, 1),
            "int8_us": round(self.int8_us, 1),
        }


def cpu_session(path: Path, threads: int, profile: Path | None = None) -> Any:
    """An onnxruntime CPU session as the optimizer times one: ``threads`` intra-op threads that
    sleep when idle, one inter-op thread, the memory arena on (as a deployed session has it);
    with ``profile``, onnxruntime's profiler writes under that file prefix."""
    import onnxruntime as ort

    options = session_options(threads, log_severity=3)
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def profiled_runs(
    paths: list[Path],
    feeds: Feeds,
    folder: Path,
    *,
    runs: int = RUNS,
    warmup: int = WARMUP_RUNS,
    threads: int = 1,
) -> list[dict[str, float]]:
    """Median kernel time (µs) of every node onnxruntime runs, per model in ``paths``, profiled
    with onnxruntime's profiler over ``runs`` runs of ``feeds`` after ``warmup`` runs. The
    models run in turn, one run each, so a noisy neighbour slows them alike."""
    sessions = [
        cpu_session(path, threads, profile=folder / f"profile.{index}")
        for index, path in enumerate(paths)
    ]
    for _ in range(warmup + runs):
        for session in sessions:
            session.run(None, feeds)
    found = []
    for session in sessions:
        written = Path(session.end_profiling())
        events = json.loads(written.read_text())
        written.unlink()
        times: dict[str, list[float]] = {}
        for event in events:
            name = event.get("name", "")
            if event.get("cat") == "Node" and name.endswith("_kernel_time"):
                times.setdefault(name[: -len("_kernel_time")], []).append(float(event["dur"]))
        found.append({name: float(np.median(v[warmup:] or v)) for name, v in times.items() if v})
    return found


def owners(model: Any) -> dict[str, str]:
    """For every node name and tensor name of ``model`` (an ``onnx.ModelProto``): the name of the
    convolution or matrix product (:data:`COMPUTE_OPS`) it belongs to, or of the node itself
    when it belongs to none (see the module's docstring)."""
    graph = model.graph
    nodes = {n.name: n for n in graph.node if n.name}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {i.name for i in graph.initializer}

    def owner(node: Any, depth: int = 0) -> str:
        if node.op_type in COMPUTE_OPS or depth > 8:
            return str(node.name)
        data = [i for i in node.input if i and i not in constants]
        if node.op_type in FOLLOWERS and len(data) == 1 and data[0] in producer:
            before = producer[data[0]]
            if len(consumers.get(data[0], [])) == 1 and before.name:
                found = owner(before, depth + 1)
                if nodes[found].op_type in COMPUTE_OPS:
                    return found
        if node.op_type in LAYOUT_OPS and node.output:
            after = consumers.get(node.output[0], [])
            if len(after) == 1 and after[0].name:
                found = owner(after[0], depth + 1)
                if nodes[found].op_type in COMPUTE_OPS:
                    return found
        return str(node.name)

    found: dict[str, str] = {}
    for node in graph.node:
        if not node.name:
            continue
        mine = owner(node)
        found[node.name] = mine
        for output in node.output:
            found.setdefault(output, mine)
    for tensor in [i.name for i in graph.input] + sorted(consumers):
        readers = [n for n in consumers.get(tensor, []) if n.name]
        if tensor not in found and tensor not in constants and len(readers) == 1:
            found[tensor] = owner(readers[0])
    return found


def attribute(times: dict[str, float], keys: dict[str, str]) -> dict[str, float]:
    """Profiled times summed per owner: each profiled name goes to the owner (``keys``, from
    :func:`owners`) of the longest node or tensor name it contains (names shorter than
    :data:`MIN_MATCH` only when equal); the rest to :data:`UNATTRIBUTED`."""
    ordered = sorted(keys, key=len, reverse=True)
    summed: dict[str, float] = {}
    for name, value in times.items():
        # A very short name (a numbered tensor, "12") matches only itself, never inside the
        # suffix onnxruntime adds ("ReorderOutput_token_12").
        match = next(
            (k for k in ordered if (k in name if len(k) >= MIN_MATCH else k == name)), None
        )
        owner = keys[match] if match is not None else UNATTRIBUTED
        summed[owner] = summed.get(owner, 0.0) + value
    return summed


def quantized_nodes(qdq_model: Any) -> list[str]:
    """Named :data:`COMPUTE_OPS` nodes of a QDQ model whose data and weight (first two inputs)
    are both dequantized — their int8 form runs — in graph order. A node kept in float reads a
    float weight, even when its data input is dequantized."""
    graph = qdq_model.graph
    producer = {o: n for n in graph.node for o in n.output}

    def dequantized(name: str) -> bool:
        return name in producer and producer[name].op_type == "DequantizeLinear"

    return [
        n.name
        for n in graph.node
        if n.name
        and n.op_type in COMPUTE_OPS
        and len(n.input) >= 2
        and all(dequantized(i) for i in n.input[:2])
    ]


def node_times(
    float_model: Path,
    int8_model: Path,
    feeds: Feeds,
    folder: Path,
    *,
    runs: int = RUNS,
    threads: int = 1,
) -> tuple[list[NodeTime], dict[str, float]]:
    """Per quantized convolution or matrix product of ``int8_model``: its float and int8 time
    (:class:`NodeTime`, graph order), and the two models' totals (``float_us``, ``int8_us``)
    and unattributed times (``float_other_us``, ``int8_other_us``), profiled on ``feeds``."""
    import onnx

    float_proto = onnx.load(str(float_model), load_external_data=False)
    keys = owners(float_proto)
    ops = {n.name: n.op_type for n in float_proto.graph.node}
    quantized = quantized_nodes(onnx.load(str(int8_model), load_external_data=False))
    float_run, int8_run = profiled_runs(
        [float_model, int8_model], feeds, folder, runs=runs, threads=threads
    )
    float_by, int8_by = attribute(float_run, keys), attribute(int8_run, keys)
    found = [
        NodeTime(name, ops[name], float_by.get(name, 0.0), int8_by.get(name, 0.0))
        for name in quantized
        if name in ops
    ]
    totals = {
        "float_us": sum(float_run.values()),
        "int8_us": sum(int8_run.values()),
        "float_other_us": float_by.get(UNATTRIBUTED, 0.0),
        "int8_other_us": int8_by.get(UNATTRIBUTED, 0.0),
    }
    return found, totals


def slow_nodes(times: Iterable[NodeTime], margin: float) -> list[NodeTime]:
    """The nodes whose int8 form is not faster than their float form by more than ``margin``
    (float time ≤ int8 time × (1 + margin)), most time lost first. A node the float profile
    has no time for (fused away into another) is never among them."""
    slow = [t for t in times if t.float_us > 0 and t.float_us <= t.int8_us * (1 + margin)]
    return sorted(slow, key=lambda t: t.float_us - t.int8_us)
