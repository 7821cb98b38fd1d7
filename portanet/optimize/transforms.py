"""The candidate transforms ``portanet optimize`` tries, each a well-kept library's own tool.

- ``ort``: onnxruntime's offline graph optimization (the optimized model it saves);
- ``slim``: onnxslim's graph simplification;
- ``fp16``: onnxconverter-common's float16 conversion, float32 inputs and outputs kept;
- ``int8-dynamic``: onnxruntime's dynamic quantization (int8 weights);
- ``int8-static``: onnxruntime's quantization pre-processing, then static QDQ quantization with
  per-channel int8 weights and uint8 activations calibrated on rows.

A candidate is a chain of them (``slim+int8-static``). Every step reads and writes files in a
scratch folder, so a library that fails leaves the other candidates untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from portanet.errors import InputError

Feeds = dict[str, np.ndarray]

#: Every transform, in the order they are tried.
TRANSFORMS = ("ort", "slim", "fp16", "int8-dynamic", "int8-static")
#: Chains worth trying when both parts are asked for (slim first: a simpler graph quantizes
#: and converts more cleanly).
COMBINATIONS = (("slim", "fp16"), ("slim", "int8-dynamic"), ("slim", "int8-static"))
#: Rows per calibration batch fed to the quantization calibrator.
CALIBRATION_BATCH = 8


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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' progress prints, warnings and log lines during a transform."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


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

    with _quiet():
        model = onnxslim.slim(onnx.load(str(source)))
    onnx.save(model, str(target))


def float16(source: Path, target: Path) -> None:
    """float16 weights and compute, float32 inputs and outputs kept."""
    import onnx
    from onnxconverter_common import float16 as f16

    with _quiet():
        model = f16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def _preprocessed(source: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(source), str(target))


def int8_dynamic(source: Path, target: Path) -> None:
    """Dynamic quantization: int8 weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    pre = target.with_name(target.stem + ".pre.onnx")
    _preprocessed(source, pre)
    with _quiet():
        quantize_dynamic(str(pre), str(target), weight_type=QuantType.QInt8)


def int8_static(
    source: Path, target: Path, *, calibration: Feeds, fixed_batch: int | None = None
) -> None:
    """Static QDQ quantization: per-channel int8 weights, uint8 activations whose ranges are
    calibrated (min/max) on ``calibration`` rows, after onnxruntime's pre-processing."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    step = fixed_batch or CALIBRATION_BATCH
    rows = len(next(iter(calibration.values())))
    batches = [
        {k: v[i : i + step] for k, v in calibration.items()}
        for i in range(0, rows - (rows % step if fixed_batch else 0), step)
    ]
    if not batches:
        raise InputError(
            f"calibration: expected at least {step} rows for a graph of batch {step}, got {rows}"
        )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    pre = target.with_name(target.stem + ".pre.onnx")
    _preprocessed(source, pre)
    with _quiet():
        quantize_static(
            str(pre),
            str(target),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def build(
    chain: tuple[str, ...],
    base: Path,
    folder: Path,
    *,
    calibration: Feeds,
    providers: list[str],
    fixed_batch: int | None = None,
) -> Path:
    """Apply the transforms of ``chain`` to ``base`` in turn; the last file written."""
    steps: dict[str, Callable[[Path, Path], Any]] = {
        "ort": lambda s, t: ort_optimized(s, t, providers=providers),
        "slim": slimmed,
        "fp16": float16,
        "int8-dynamic": int8_dynamic,
        "int8-static": lambda s, t: int8_static(
            s, t, calibration=calibration, fixed_batch=fixed_batch
        ),
    }
    current = base
    for index, name in enumerate(chain):
        target = folder / f"{'+'.join(chain[: index + 1])}.onnx"
        if not target.exists():
            steps[name](current, target)
        current = target
    return current


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
