"""``portanet bench``: latency percentiles and throughput of a model per batch size, and of its
Keras source in the same run (alternating slices, so both see the same machine)."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portanet._files import refuse_overwrite, sha256_of
from portanet.errors import InputError
from portanet.optimize import data as rows_
from portanet.optimize.timing import Latency, alternating, summarize
from portanet.options import DEFAULT_BENCH_BATCH_SIZES, BenchOptions
from portanet.runtime import load

DEFAULT_BATCH_SIZES = DEFAULT_BENCH_BATCH_SIZES
#: Rows of a batch at most (bounds memory for large samples).
MAX_BATCH_ELEMENTS = 1 << 28


@dataclass
class BenchReport:
    """Timings per batch size for the ONNX model and, when given, its Keras source."""

    model: str
    providers: list[str]
    threads: int | None
    seconds: float
    onnx: list[Latency]
    keras: list[Latency] | None = None
    source: str | None = None
    #: sha256 of the model file timed (``report --bench`` refuses a bench of another model).
    model_sha256: str | None = None

    def ratios(self) -> list[dict[str, float]]:
        """Per batch size: ONNX rows/s over Keras rows/s, and Keras p50 over ONNX p50."""
        if not self.keras:
            return []
        return [
            {"batch": o.batch, "throughput": o.rows_per_s / k.rows_per_s, "p50": k.p50_s / o.p50_s}
            for o, k in zip(self.onnx, self.keras, strict=False)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``; what ``portanet report --bench`` reads)."""
        return {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "providers": self.providers,
            "threads": self.threads,
            "seconds": self.seconds,
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
            },
            "onnx": [x.to_dict() for x in self.onnx],
            "keras": [x.to_dict() for x in self.keras] if self.keras else None,
            "source": self.source,
            "ratios": self.ratios(),
        }


def parse_batch_sizes(value: str | list[int] | tuple[int, ...]) -> list[int]:
    """Batch sizes from ``1,8,64`` (positive, unique, in the given order)."""
    try:
        sizes = [
            int(v)
            for v in (value.split(",") if isinstance(value, str) else value)
            if str(v).strip()
        ]
    except ValueError as exc:
        raise InputError(
            f"batch sizes: expected comma-separated positive integers, got {value!r}"
        ) from exc
    if not sizes or any(s < 1 for s in sizes):
        raise InputError(f"batch sizes: expected positive integers, got {value!r}")
    return list(dict.fromkeys(sizes))


def _keras_call(
    source: str | os.PathLike[str], feeds: rows_.Feeds, schema: Any, allow_unsafe: bool
) -> Callable[[rows_.Feeds], Callable[[], Any]]:
    """A factory: ONNX-layout feeds → a no-argument call running Keras on them, compiled with
    ``tf.function`` (how Keras serves a model at its fastest)."""
    from portanet.export.convert.keras_to_onnx import call_model, keras_signature
    from portanet.export.keras.load import load_keras

    loaded = load_keras(source, allow_unsafe=allow_unsafe)
    specs, _ = keras_signature(loaded.model)
    if sorted(s.name for s in specs) != sorted(feeds):
        raise InputError(
            f"{source}: expected a Keras model with inputs {sorted(feeds)} like "
            f"the ONNX model, got {[s.name for s in specs]}"
        )
    import tensorflow as tf

    compiled = tf.function(lambda arrays: call_model(loaded.model, arrays))

    def factory(batch: rows_.Feeds) -> Callable[[], Any]:
        keras_feeds = rows_.to_keras_layout(batch, schema)
        arrays = [keras_feeds[s.name] for s in specs]
        return lambda: [t.numpy() for t in compiled(arrays)]

    return factory


def bench_model(
    model: str | os.PathLike[str],
    options: BenchOptions | None = None,
    **changes: Any,
) -> BenchReport:
    """Time ``model`` for about ``options.seconds`` per batch size (warm-up excluded) on
    ``options.provider`` with ``options.threads`` (default: the CPUs this process may use);
    inputs are rows of ``options.data`` repeated to fill a batch, else seeded random values.
    With ``options.source`` the Keras model runs the same batches in alternating slices; with
    ``options.plot`` latency and throughput are also drawn there. ``options``
    (:class:`~portanet.options.BenchOptions`) fields may also be given as keywords, which
    override it."""
    opts = dataclasses.replace(options or BenchOptions(), **changes)
    reads = {"MODEL": model, "--source": opts.source, "--data": opts.data}
    refuse_overwrite({"--plot": opts.plot}, reads)
    report = _bench(model, opts)
    if opts.plot is not None:
        plot_bench(report, opts.plot)
    return report


def _bench(model: str | os.PathLike[str], opts: BenchOptions) -> BenchReport:
    source, seconds, threads, data = opts.source, opts.seconds, opts.threads, opts.data
    batch_sizes, seed, allow_unsafe = opts.batch_sizes, opts.seed, opts.allow_unsafe
    provider = opts.provider if isinstance(opts.provider, str) else list(opts.provider)
    sizes = parse_batch_sizes(batch_sizes)
    if seconds <= 0:
        raise InputError(f"seconds: expected a positive duration, got {seconds}")
    runtime = load(model, providers=provider, strict=True, threads=threads)
    fixed = rows_.fixed_batch(runtime)
    if fixed is not None and sizes != [fixed]:
        raise InputError(
            f"{model}: the graph takes batches of exactly {fixed}, got batch sizes {sizes}"
        )
    pool = rows_.load_rows(data, runtime) if data else rows_.random_feeds(runtime, 64, seed)
    sample = sum(v[0].size for v in pool.values())
    too_big = [s for s in sizes if s * sample > MAX_BATCH_ELEMENTS]
    if too_big:
        raise InputError(
            f"{model}: batch sizes {too_big} hold over {MAX_BATCH_ELEMENTS:,} "
            f"input values ({sample:,} per row); expected smaller batches"
        )
    keras = _keras_call(source, pool, runtime.schema, allow_unsafe) if source else None
    onnx_results, keras_results = [], []
    for size in sizes:
        batch = rows_.take(pool, np.arange(size) % rows_.rows_of(pool))
        calls: dict[str, Callable[[], Any]] = {
            "onnx": functools.partial(runtime.run, batch, allow_nan=True)
        }
        if keras is not None:
            calls["keras"] = keras(batch)
        samples = alternating(calls, seconds=seconds, rounds=3 if keras else 1, warmup=3)
        onnx_results.append(summarize(size, samples["onnx"]))
        if keras is not None:
            keras_results.append(summarize(size, samples["keras"]))
    return BenchReport(
        str(model),
        runtime.providers,
        threads,
        seconds,
        onnx_results,
        keras_results or None,
        str(source) if source else None,
        sha256_of(model),
    )


def plot_bench(report: BenchReport | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw latency (p50, with the p90–p99 band) and throughput against batch size; written
    atomically as PNG, SVG or PDF by the path's suffix."""
    from portanet._files import atomic_path
    from portanet.report.charts import bench_figure

    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError(
            f"{target}: expected a .png, .svg or .pdf plot path, got suffix {target.suffix!r}"
        )
    figure = bench_figure(report.to_dict() if isinstance(report, BenchReport) else report)
    with atomic_path(target) as temporary:
        figure.savefig(temporary, dpi=150, format=target.suffix[1:].lower())
    import matplotlib.pyplot as plt

    plt.close(figure)
    return target
