"""The candidate transforms ``portanet optimize`` tries, each a well-kept library's own tool.

- ``ort``: onnxruntime's offline graph optimization (the optimized model it saves);
- ``slim``: onnxslim's graph simplification;
- ``fp16``: onnxconverter-common's float16 conversion, float32 inputs and outputs kept;
- ``int8-dynamic``: onnxruntime's dynamic quantization (int8 weights);
- ``int8-static``: onnxruntime's quantization pre-processing, then an accuracy-aware search of
  static QDQ recipes and of the nodes kept in float (:mod:`portanet.optimize.int8`).

A candidate is a chain of them (``slim+int8-static``). Every step reads and writes files in a
scratch folder, so a library that fails leaves the other candidates untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError
from portanet.optimize.quiet import quiet
from portanet.options import OPTIMIZE_TRANSFORMS

Feeds = dict[str, np.ndarray]

#: Every transform, in the order they are tried.
TRANSFORMS = OPTIMIZE_TRANSFORMS
#: Chains worth trying when both parts are asked for (slim first: a simpler graph quantizes
#: and converts more cleanly).
COMBINATIONS = (("slim", "fp16"), ("slim", "int8-dynamic"), ("slim", "int8-static"))


def parse_try(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """The transforms named in ``--try`` (comma-separated), checked."""
    names = [
        n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()
    ]
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown or not names:
        raise InputError(
            f"transforms to try: expected some of {', '.join(TRANSFORMS)}, got "
            f"{', '.join(names) or 'none'} (unknown: {', '.join(unknown)})"
        )
    return [n for n in TRANSFORMS if n in names]


def chains(names: list[str]) -> list[tuple[str, ...]]:
    """The candidates for the transforms ``names``: each alone, then the combinations."""
    alone = [(n,) for n in names]
    return alone + [c for c in COMBINATIONS if all(n in names for n in c)]


def ort_optimized(source: Path, target: Path, *, providers: list[str]) -> None:
    """onnxruntime's extended graph optimizations, saved (portable across CPUs: the
    hardware-specific layout transforms of ``ORT_ENABLE_ALL`` are left to load time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=providers)


def slimmed(source: Path, target: Path) -> None:
    """onnxslim's simplification (constant folding, dead code, redundant shape ops)."""
    import onnx
    import onnxslim

    with quiet():
        model = onnxslim.slim(onnx.load(str(source)))
    onnx.save(model, str(target))


def float16(source: Path, target: Path) -> None:
    """float16 weights and compute, float32 inputs and outputs kept. ``Cast`` nodes stay as
    they are: the converter retypes their output to float16 while keeping ``to=float``, a graph
    onnxruntime refuses to load (integer ids cast to float, as Keras' Embedding does)."""
    import onnx
    from onnxconverter_common import float16 as f16

    with quiet():
        model = f16.convert_float_to_float16(
            onnx.load(str(source)),
            keep_io_types=True,
            op_block_list=[*f16.DEFAULT_OP_BLOCK_LIST, "Cast"],
        )
    onnx.save(model, str(target))


def _preprocessed(source: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet():
        quant_pre_process(str(source), str(target))


def int8_dynamic(source: Path, target: Path) -> None:
    """Dynamic quantization: int8 weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    pre = target.with_name(target.stem + ".pre.onnx")
    _preprocessed(source, pre)
    with quiet():
        quantize_dynamic(str(pre), str(target), weight_type=QuantType.QInt8)


def int8_static(
    source: Path,
    target: Path,
    *,
    calibration: Feeds,
    judge: Any,
    vnni: bool | None,
    fixed_batch: int | None = None,
    speed: Any = None,
) -> Any:
    """Accuracy-aware static QDQ quantization (see :mod:`portanet.optimize.int8`): the recipe
    and the fewest float nodes that ``judge`` accepts, after onnxruntime's pre-processing, then
    (with ``speed``, a :class:`~portanet.optimize.speed.SpeedCheck`) the layers kept float
    because their int8 kernel is slower. Returns the
    :class:`~portanet.optimize.int8.SearchResult`; the model is copied to ``target``."""
    import shutil

    from portanet.optimize.int8 import search

    pre = target.with_name(target.stem + ".pre.onnx")
    _preprocessed(source, pre)
    work = target.with_name(target.stem + ".search")
    work.mkdir(exist_ok=True)
    found = search(
        pre,
        work,
        calibration=calibration,
        judge=judge,
        vnni=vnni,
        fixed_batch=fixed_batch,
        speed=speed,
    )
    shutil.copyfile(found.path, target)
    shutil.rmtree(work, ignore_errors=True)
    return found


def build(
    chain: tuple[str, ...],
    base: Path,
    folder: Path,
    *,
    calibration: Feeds,
    providers: list[str],
    judge: Any = None,
    vnni: bool | None = None,
    fixed_batch: int | None = None,
    speed: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """Apply the transforms of ``chain`` to ``base`` in turn: the last file written and what
    the steps reported (the int8 search's steps under ``"int8"``; ``speed`` is its
    latency-aware step's :class:`~portanet.optimize.speed.SpeedCheck`, ``None`` for none)."""
    details: dict[str, Any] = {}

    def static(s: Path, t: Path) -> None:
        details["int8"] = int8_static(
            s,
            t,
            calibration=calibration,
            judge=judge,
            vnni=vnni,
            fixed_batch=fixed_batch,
            speed=speed,
        ).to_dict()

    steps: dict[str, Callable[[Path, Path], Any]] = {
        "ort": lambda s, t: ort_optimized(s, t, providers=providers),
        "slim": slimmed,
        "fp16": float16,
        "int8-dynamic": int8_dynamic,
        "int8-static": static,
    }
    current = base
    for index, name in enumerate(chain):
        target = folder / f"{'+'.join(chain[: index + 1])}.onnx"
        if not target.exists():
            steps[name](current, target)
        current = target
    return current, details


#: ONNX domains every conforming runtime implements.
STANDARD_DOMAINS = ("", "ai.onnx")


def nonstandard_ops(path: str | os.PathLike[str]) -> list[str]:
    """``domain:op`` of every operator outside the standard ONNX domains (sorted, unique):
    empty for a file any ONNX runtime can run, ``com.microsoft:FusedConv`` and the like for one
    only onnxruntime can."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted(
        {f"{n.domain}:{n.op_type}" for n in graph.node if n.domain not in STANDARD_DOMAINS}
    )


def tool_versions() -> dict[str, str | None]:
    """Versions of the libraries the transforms use (for the lineage)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("onnxruntime", "onnx", "onnxslim", "onnxconverter-common"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes of a file."""
    return Path(path).stat().st_size
