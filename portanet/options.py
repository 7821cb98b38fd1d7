"""What an export job is asked to do: one frozen :class:`ExportOptions` with its defaults.

The defaults are defined here once, without importing TensorFlow, Keras or numpy, so that the CLI
can show them and fill the object without loading the export side. ``portanet export`` builds
one; :func:`portanet.export.pipeline.export_model` takes it. It lives outside
:mod:`portanet.export` because every command's start-up imports the CLI, and ``infer`` must not
import the export package (``tests/cli/test_cold_start.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Opset written by default: run by every onnxruntime since 1.14, and tf2onnx's newest tested.
DEFAULT_OPSET = 17
#: The parity gate's default absolute and relative tolerances.
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
#: The gate's default tolerance mode (``"strict"`` or ``"noise-floor"``).
DEFAULT_TOLERANCE_MODE = "strict"
#: Who cleans the converted graph: ``"auto"`` (onnxruntime's offline optimization, or tf2onnx's
#: optimizers when the layerwise table is asked for), ``"tf2onnx"`` or ``"onnxruntime"``.
DEFAULT_CLEANUP = "auto"


@dataclass(frozen=True)
class ExportOptions:
    """Options of one export (see :func:`portanet.export.pipeline.export_model`).

    ``opset`` to write; the gate's ``data`` (rows or a file), ``atol``/``rtol``,
    ``tolerance_mode``, ``seed``, ``layerwise`` (the per-layer table), or ``verify=False`` to skip
    it; ``batch_size`` fixes the graph's batch dimension; ``inputs_as_nchw`` names image inputs
    taken channels-first; ``feature_names``, ``labels``, ``image_size`` (height, width),
    ``image_range`` and ``channel_order`` are recorded for the deployment side, with how images
    are resized: ``image_preset`` (e.g. ``"teachable-machine"``) or ``image_resize``,
    ``image_filter``, ``image_library`` and ``image_exif`` (:mod:`portanet.images`);
    ``allow_unsafe`` loads files the safety checks refuse; ``memory_check=False`` skips the memory
    preflight (:mod:`portanet.export.preflight`); ``cleanup`` picks who cleans the converted graph
    (``"tf2onnx"``, the leaner ``"onnxruntime"``, or ``"auto"``: onnxruntime unless
    ``layerwise``: :mod:`portanet.export.convert.lean`).
    """

    opset: int = DEFAULT_OPSET
    data: str | os.PathLike[str] | None = None
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    verify: bool = True
    batch_size: int | None = None
    feature_names: tuple[str, ...] | None = None
    seed: int = 0
    allow_unsafe: bool = False
    inputs_as_nchw: tuple[str, ...] | None = None
    layerwise: bool = False
    labels: str | os.PathLike[str] | None = None
    image_size: tuple[int, int] | None = None
    image_range: str | None = None
    channel_order: str | None = None
    image_preset: str | None = None
    image_resize: str | None = None
    image_filter: str | None = None
    image_library: str | None = None
    image_exif: bool | None = None
    tolerance_mode: str = DEFAULT_TOLERANCE_MODE
    memory_check: bool = True
    cleanup: str = DEFAULT_CLEANUP

    def graph_cleanup(self) -> str:
        """The clean-up the conversion runs: ``cleanup``, with ``"auto"`` resolved — tf2onnx's
        optimizers when the layerwise table is asked for (they keep TensorFlow's tensor names,
        so the table finds every layer), onnxruntime's leaner and faster one otherwise."""
        if self.cleanup != "auto":
            return self.cleanup
        return "tf2onnx" if self.layerwise else "onnxruntime"

    def image_steps(self) -> dict[str, object]:
        """How images are resized, as :func:`portanet.export.recorded.image_recipes` takes it."""
        return {
            "preset": self.image_preset,
            "resize": self.image_resize,
            "filter": self.image_filter,
            "library": self.image_library,
            "exif": self.image_exif,
        }

    def __post_init__(self) -> None:
        # Lists given by callers become tuples: the options stay hashable and unchanged.
        for name in ("feature_names", "inputs_as_nchw"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


#: Transforms ``optimize`` tries by default (:mod:`portanet.optimize.transforms`), in order.
OPTIMIZE_TRANSFORMS = ("ort", "slim", "fp16", "int8-dynamic", "int8-static")
#: The default budget: max abs error against float32 (and Keras), and labels kept unchanged.
DEFAULT_MAX_ABS = 1e-3
DEFAULT_MIN_AGREEMENT = 0.99
#: Rows of ``--data`` that calibrate int8 static quantization (at most half of them).
DEFAULT_CALIBRATION_ROWS = 128
#: Batch size of ``optimize``'s throughput measurement.
DEFAULT_THROUGHPUT_BATCH = 64
#: Batch sizes ``bench`` times by default.
DEFAULT_BENCH_BATCH_SIZES = (1, 8, 64, 1024)


@dataclass(frozen=True)
class OptimizeOptions:
    """Options of one ``optimize`` job (see :func:`portanet.optimize.optimize_model`).

    The budget: ``max_abs`` error against the float32 model (and against Keras when ``source``
    is given) and, for classifiers, ``min_agreement`` (share of unchanged labels). ``target``:
    ``cpu`` or ``cuda``; ``transforms``: what to try (``OPTIMIZE_TRANSFORMS``);
    ``calibration_rows`` of ``--data`` calibrate int8 (at most half), the rest are split into
    selection rows (the int8 search) and final rows (every verdict); ``seconds`` of timing per
    candidate; ``throughput_batch``; ``threads``; ``seed`` of the split; ``allow_unsafe``
    loads a Keras source the safety checks refuse; ``transformed_only`` never keeps float32;
    ``ops`` (``standard`` or ``any``) and ``goal`` (``latency`` or ``throughput``); ``output``
    (default ``MODEL.optimized.onnx``) and ``report`` (the candidate table as JSON, also
    written when no candidate is inside the budget).
    """

    source: str | os.PathLike[str] | None = None
    output: str | os.PathLike[str] | None = None
    report: str | os.PathLike[str] | None = None
    max_abs: float = DEFAULT_MAX_ABS
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    target: str = "cpu"
    transforms: str | tuple[str, ...] | list[str] = OPTIMIZE_TRANSFORMS
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS
    seconds: float = 1.0
    throughput_batch: int = DEFAULT_THROUGHPUT_BATCH
    threads: int | None = None
    seed: int = 0
    allow_unsafe: bool = False
    transformed_only: bool = False
    ops: str = "standard"
    goal: str = "latency"

    def __post_init__(self) -> None:
        if isinstance(self.transforms, list):
            object.__setattr__(self, "transforms", tuple(self.transforms))


@dataclass(frozen=True)
class BenchOptions:
    """Options of one ``bench`` job (see :func:`portanet.optimize.bench_model`).

    ``source``: a Keras file timed in the same run; ``batch_sizes`` (a tuple or ``"1,8,64"``);
    about ``seconds`` per batch size; ``provider`` and ``threads``; ``data``: rows to feed
    (default seeded random values, drawn with ``seed``); ``plot``: also draw latency and
    throughput (.png, .svg or .pdf); ``allow_unsafe`` loads a Keras source the safety checks
    refuse.
    """

    source: str | os.PathLike[str] | None = None
    batch_sizes: str | tuple[int, ...] | list[int] = DEFAULT_BENCH_BATCH_SIZES
    seconds: float = 5.0
    provider: str | tuple[str, ...] | list[str] = "cpu"
    threads: int | None = None
    data: str | os.PathLike[str] | None = None
    seed: int = 0
    plot: str | os.PathLike[str] | None = None
    allow_unsafe: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_sizes", "provider"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
