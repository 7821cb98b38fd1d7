"""Statistics of a model's intermediate tensors on rows, a few rows per call (numpy and
onnxruntime only), and the row reader onnxruntime's calibrators take."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


class Reader:
    """A calibration reader over ``rows`` in batches, restartable on a row range (what
    onnxruntime's calibrators and ``CalibStridedMinMax`` ask of it)."""

    def __init__(self, rows: Feeds, batch: int) -> None:
        self._rows, self._batch = rows, batch
        self._count = len(next(iter(rows.values())))
        self.set_range(0, self._count)

    def __len__(self) -> int:
        return self._count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, self._count)

    def get_next(self) -> Feeds | None:
        if self._next >= self._end:
            return None
        stop = min(self._next + self._batch, self._end)
        batch = {k: v[self._next : stop] for k, v in self._rows.items()}
        self._next = stop
        return batch

    def __iter__(self) -> Any:
        self.set_range(0, self._count)
        return iter(self.get_next, None)


def batches(rows: Feeds, batch: int) -> Iterator[Feeds]:
    """``rows`` in whole batches of ``batch`` rows (all of them when fewer)."""
    count = len(next(iter(rows.values())))
    for start in range(0, count - count % batch or count, batch):
        yield {k: v[start : start + batch] for k, v in rows.items()}


def session(model: Any, threads: int) -> Any:
    """An onnxruntime CPU session of the in-memory ``model`` without the memory arena
    (``threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def exposing(model: Any, tensors: list[str]) -> Any:
    """A copy of ``model`` whose graph also outputs ``tensors`` (float)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in tensors:
        if name not in present:
            copy.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
            present.add(name)
    return copy


def means(
    model: Any,
    rows: Feeds,
    tensors: list[str],
    *,
    keep: Callable[[str, int], tuple[int, ...]],
    batch: int = 8,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """Mean of each of ``tensors`` of ``model`` over ``rows``, reduced over the axes
    ``keep(name, rank)`` does not list (float64)."""
    computed = [t for t in tensors if t not in rows]  # a graph input is read from the rows
    run = session(exposing(model, computed), threads) if computed else None
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feeds in batches(rows, batch):
        got = dict(zip(computed, run.run(computed, feeds) if run else [], strict=True))
        for name in tensors:
            value = feeds[name] if name in feeds else got[name]
            kept = keep(name, value.ndim)
            axes = tuple(a for a in range(value.ndim) if a not in kept)
            total = np.asarray(value, dtype=np.float64).sum(axis=axes)
            sums[name] = sums[name] + total if name in sums else total
            counts[name] = counts.get(name, 0) + int(
                np.prod([value.shape[a] for a in axes], dtype=np.int64)
            )
    return {name: sums[name] / counts[name] for name in sums}
