"""How validated feeds reach onnxruntime, fast and with bounded memory (public API only).

* **Small batches** of a single-input model go through an ``IOBinding`` that each thread keeps
  per input shape, bound once to buffers it owns: a call copies the rows in, runs, and copies
  the outputs out, skipping the per-call conversions of ``InferenceSession.run``.
* **Large batches** run in chunks sized by the bytes a row weighs (:func:`chunk_rows_for`): small
  enough for a row-wise model's intermediate tensors to stay in the CPU caches, and never more
  than :data:`MAX_CHUNK_BYTES` of input per call, so that memory stays bounded for big rows such
  as images. Every chunk after the first writes straight into one preallocated output.
* **Small rows** (cache-sized chunks of many rows) run their chunks side by side on as many
  threads as the session has intra-op threads (at most :data:`MAX_CHUNK_WORKERS`), each thread
  taking the next chunk in row order: a chunk's kernels are too small to be worth splitting over
  threads that sleep between kernels (spinning is off), so the threads split the chunks instead.
  The chunks in flight together never hold more than :data:`MAX_CHUNK_BYTES` of input. Big rows
  (images) keep one chunk at a time, split by onnxruntime itself, so that memory stays bounded
  by one chunk.
* **Fixed-batch models** (exported with, say, batch size 1) take any number of rows: the rows
  run in chunks of exactly that size, the last one padded with copies of its last row, and the
  padding's outputs dropped.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort

from portanet.errors import InputError, first_line
from portanet.runtime.inputs import check_finite
from portanet.runtime.providers import usable_cpus

#: Input bytes per call for row-wise models: a chunk's intermediates then fit the L2 cache.
CACHE_CHUNK_BYTES = 512 << 10
#: Fewest rows per chunk when rows are large (cache blocking cannot help them anyway).
MIN_CHUNK_ROWS = 64
#: Most input bytes per onnxruntime call: the memory bound for big rows (e.g. images).
MAX_CHUNK_BYTES = 64 << 20
#: Batches up to this many input bytes use the per-thread bound buffers.
SMALL_BATCH_BYTES = 64 << 10
#: Input shapes for which each thread keeps bound buffers (the table is emptied beyond).
MAX_SLOTS_PER_THREAD = 8
#: Most threads that run the chunks of one small-row batch side by side (each holds one chunk's
#: intermediates at a time, so this also bounds the memory they take together).
MAX_CHUNK_WORKERS = 4


def all_finite(array: np.ndarray) -> bool:
    """Quick test that a float array holds no NaN/Inf: NaN and Inf survive a sum, so a finite
    sum proves the array finite (a non-finite one, or an overflow, goes to the exact check)."""
    if array.size <= 64:
        return math.isfinite(sum(array.reshape(-1).tolist()))
    return math.isfinite(np.add.reduce(array, axis=None))


def chunk_rows_for(row_bytes: int) -> int:
    """Rows per onnxruntime call for rows of ``row_bytes`` input bytes (all inputs together).

    ``CACHE_CHUNK_BYTES`` worth of rows, at least ``MIN_CHUNK_ROWS``, at most
    ``MAX_CHUNK_BYTES`` worth (and at least one row): 16,384 rows of 8 float32 features,
    64 images of 224×224×3 float32.
    """
    row_bytes = max(1, int(row_bytes))
    rows = max(CACHE_CHUNK_BYTES // row_bytes, MIN_CHUNK_ROWS)
    return max(1, min(rows, MAX_CHUNK_BYTES // row_bytes))


def is_small_row(row_bytes: int) -> bool:
    """Rows light enough that a chunk is cache-sized (more than :data:`MIN_CHUNK_ROWS` rows of
    them fit in :data:`CACHE_CHUNK_BYTES`): their chunks may run side by side."""
    return 0 < row_bytes * MIN_CHUNK_ROWS < CACHE_CHUNK_BYTES


def chunk_workers_of(session: ort.InferenceSession) -> int:
    """Threads for the chunks of a small-row batch: the session's intra-op threads (its
    default, 0, means one per usable CPU), at most :data:`MAX_CHUNK_WORKERS`."""
    try:
        threads = int(session.get_session_options().intra_op_num_threads)
    except (AttributeError, TypeError, ValueError):  # a session-like object without options
        threads = 1
    return max(1, min(threads if threads > 0 else usable_cpus(), MAX_CHUNK_WORKERS))


Slot = Callable[[np.ndarray, bool], "np.ndarray | dict[str, np.ndarray] | None"]


def _bound_slot(
    session: ort.InferenceSession,
    input_name: str,
    inbuf: np.ndarray,
    outputs: dict[str, np.ndarray],
    check: bool,
) -> Slot:
    """A function over one thread's buffers bound once for one input shape.

    Called with rows of that shape, it returns what :meth:`Model.predict` returns (the output
    array, or a dict name → array), freshly allocated, or ``None`` when the rows need the exact
    NaN/Inf check of the general path. (A closure: the cheapest call Python has.)
    """
    binding = session.io_binding()
    binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(inbuf))
    for name, buffer in outputs.items():
        binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(buffer))
    run, copyto, isfinite, reduce = (
        session.run_with_iobinding,
        np.copyto,
        math.isfinite,
        np.add.reduce,
    )
    flat = inbuf.reshape(-1)
    small = flat.size <= 64
    only = next(iter(outputs.values())) if len(outputs) == 1 else None

    def slot(x: np.ndarray, allow_nan: bool) -> np.ndarray | dict[str, np.ndarray] | None:
        copyto(inbuf, x)
        if check and not allow_nan and not isfinite(sum(flat.tolist()) if small else reduce(flat)):
            return None
        run(binding)
        if only is not None:
            return np.array(only, copy=True)
        return {name: out.copy() for name, out in outputs.items()}

    return slot


class ThreadSlots(threading.local):
    """Each thread's bound buffers (see :func:`_bound_slot`) by input shape, in ``table``."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, ...], Slot] = {}
        self.seen: set[tuple[int, ...]] = set()  # shapes run once (bound when seen again)


class Executor:
    """Runs validated feeds on one session (see the module docstring). Thread-safe."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_names: Sequence[str],
        output_names: Sequence[str],
        float_inputs: Iterable[str],
        origin: str,
        *,
        fixed_batch: int | None = None,
    ) -> None:
        self.session = session
        self.output_names = list(output_names)
        self.float_inputs = set(float_inputs)
        self.origin = origin
        #: Batch size fixed by the model (rows run in chunks of exactly this size), or None.
        self.fixed_batch = fixed_batch
        cpu_only = list(session.get_providers()) == ["CPUExecutionProvider"]
        numeric = all(
            not o.type.startswith(("tensor(string", "seq", "map")) for o in session.get_outputs()
        )
        #: Binding buffers is done only where onnxruntime computes in host memory (CPU).
        self.bindable = cpu_only and numeric
        self._single = input_names[0] if len(input_names) == 1 else None
        #: Each thread's bound buffers by input shape (``slots.table``).
        self.slots = ThreadSlots()
        #: Threads that run the chunks of a small-row batch side by side (1: one at a time).
        self.chunk_workers = chunk_workers_of(session) if self.bindable else 1
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        self._pool_lock = threading.Lock()

    # -- small batches -------------------------------------------------------------------

    def remember(self, x: np.ndarray, outputs: list[np.ndarray]) -> None:
        """Keep bound buffers for ``x``'s shape after a validated run gave ``outputs``."""
        if (
            not self.bindable
            or self._single is None
            or self.fixed_batch is not None
            or x.nbytes > SMALL_BATCH_BYTES
            or not x.size
            or not x.ndim
        ):
            return
        seen = self.slots.seen
        if x.shape not in seen:  # bind a shape when it comes back, not on its first call
            if len(seen) >= 8 * MAX_SLOTS_PER_THREAD:
                seen.clear()
            seen.add(x.shape)
            return
        table = self.slots.table
        if len(table) >= MAX_SLOTS_PER_THREAD:
            table.clear()
        buffers = {
            name: np.empty_like(out) for name, out in zip(self.output_names, outputs, strict=False)
        }
        table[x.shape] = _bound_slot(
            self.session, self._single, np.empty_like(x), buffers, self._single in self.float_inputs
        )

    # -- any batch -----------------------------------------------------------------------

    def execute(
        self, feeds: dict[str, np.ndarray], allow_nan: bool, chunk_rows: int | None = None
    ) -> list[np.ndarray]:
        """Check NaN/Inf chunk by chunk (while the chunk is in cache) and run."""
        check = () if allow_nan else [n for n in self.float_inputs if n in feeds]
        rows = next(iter(feeds.values())).shape[0]
        row_bytes = sum(v.nbytes // max(rows, 1) for v in feeds.values())
        if self.fixed_batch is not None:
            step = self.fixed_batch
        elif chunk_rows:
            step = chunk_rows
        else:
            step = chunk_rows_for(row_bytes)
        if rows == step or (rows < step and self.fixed_batch is None):
            self._check(feeds, check, 0)
            return self.run_plain(feeds)
        side_by_side = (
            self.chunk_workers > 1
            and self.fixed_batch is None
            and is_small_row(row_bytes)
            # chunks in flight together never hold more input than one chunk may
            and step * row_bytes * self.chunk_workers <= MAX_CHUNK_BYTES
        )
        return self._chunked(feeds, rows, step, check, side_by_side)

    def _check(self, feeds: dict[str, np.ndarray], names: Iterable[str], offset: int) -> None:
        for name in names:
            if not all_finite(feeds[name]):
                check_finite(name, feeds[name], offset)

    def _chunked(
        self,
        feeds: dict[str, np.ndarray],
        rows: int,
        step: int,
        check: Iterable[str],
        side_by_side: bool = False,
    ) -> list[np.ndarray]:
        """The first chunk by a plain run (it gives the outputs' shapes), the others into one
        preallocated output: one after the other, or side by side (see the module docstring)."""
        out = self._run_chunk(feeds, None, 0, min(step, rows), step, check)
        starts = range(step, rows, step)

        def chunk(start: int) -> None:
            self._run_chunk(feeds, out, start, min(start + step, rows), step, check)

        if side_by_side and len(starts) > 1:
            self._side_by_side(chunk, starts)
        else:
            for start in starts:
                chunk(start)
        return out

    def _run_chunk(
        self,
        feeds: dict[str, np.ndarray],
        out: list[np.ndarray] | None,
        start: int,
        stop: int,
        step: int,
        check: Iterable[str],
    ) -> list[np.ndarray]:
        """Check and run rows ``start:stop`` into ``out`` (allocated here when ``None``)."""
        part = {k: v[start:stop] for k, v in feeds.items()}
        self._check(part, check, start)
        short = self.fixed_batch is not None and stop - start < step
        if short:  # pad with copies of the last row; the padding's outputs are dropped
            part = {
                k: np.concatenate([v, np.repeat(v[-1:], step - len(v), axis=0)])
                for k, v in part.items()
            }
        if out is not None and not short and self.bindable:
            self._run_into(part, [target[start:stop] for target in out])
            return out
        results = self.run_plain(part)
        self._check_rows(results, len(next(iter(part.values()))))
        if out is None:
            rows = next(iter(feeds.values())).shape[0]
            out = [np.empty((rows, *r.shape[1:]), dtype=r.dtype) for r in results]
        for target, result in zip(out, results, strict=False):
            target[start:stop] = result[: stop - start]
        return out

    def _side_by_side(self, chunk: Callable[[int], None], starts: range) -> None:
        """``chunk(start)`` for every start, on this thread and up to ``chunk_workers - 1``
        pool threads, each taking the next start in row order. Chunks are taken in order and a
        failure stops the taking only, so the chunks before a failed one all run and the error
        raised is the one of the lowest failed start (the first bad row, as one at a time)."""
        lock = threading.Lock()
        pending = iter(starts)
        failures: dict[int, Exception] = {}
        halt = threading.Event()

        def drain() -> None:
            while True:
                with lock:
                    start = None if failures or halt.is_set() else next(pending, None)
                if start is None:
                    return
                try:
                    chunk(start)
                except Exception as exc:  # re-raised below, in the calling thread
                    with lock:
                        failures[start] = exc
                    return

        helpers: list[Future[None]] = []
        pool = self._chunk_pool()
        try:
            for _ in range(min(self.chunk_workers, len(starts)) - 1):
                helpers.append(pool.submit(drain))
        except RuntimeError:  # the interpreter is shutting down: this thread runs them all
            pass
        try:
            drain()
        finally:
            halt.set()
            for helper in helpers:
                if not helper.cancel():  # started: it writes into the output, wait for it
                    helper.result()
        if failures:
            raise failures[min(failures)]

    def _chunk_pool(self) -> ThreadPoolExecutor:
        """This process's helper threads for :meth:`_side_by_side` (made again after a fork,
        which keeps no threads)."""
        with self._pool_lock:
            if self._pool is None or self._pool[0] != os.getpid():
                pool = ThreadPoolExecutor(
                    max(1, self.chunk_workers - 1), thread_name_prefix="portanet-chunks"
                )
                self._pool = (os.getpid(), pool)
            return self._pool[1]

    def _check_rows(self, results: list[np.ndarray], rows: int) -> None:
        for name, result in zip(self.output_names, results, strict=False):
            if result.ndim == 0 or result.shape[0] != rows:
                raise InputError(
                    f"{self.origin}: expected output {name!r} to have one row per input row "
                    f"({rows}) so that the batch can run in parts, got shape "
                    f"{tuple(result.shape)}; pass at most one part's rows per call"
                )

    def run_plain(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One ``InferenceSession.run``; onnxruntime's errors become one :class:`InputError`."""
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as exc:  # onnxruntime's own untyped errors (e.g. a bad dynamic dim)
            raise self._error(feeds, exc) from exc

    def _run_into(self, feeds: dict[str, np.ndarray], targets: list[np.ndarray]) -> None:
        """Run with the inputs and outputs bound to these arrays (no copies either way)."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
            )
        for name, target in zip(self.output_names, targets, strict=False):
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(target))
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise self._error(feeds, exc) from exc

    def _error(self, feeds: dict[str, np.ndarray], exc: Exception) -> InputError:
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        return InputError(
            f"{self.origin}: onnxruntime could not run the model on inputs of "
            f"shapes {shapes}: {first_line(exc)}"
        )


def fixed_batch_of(shapes: Sequence[Sequence[Any]]) -> int | None:
    """The batch size every input fixes on its first axis, or ``None`` (dynamic or disagreeing
    first axes, or a scalar input)."""
    firsts = {shape[0] if shape and isinstance(shape[0], int) else None for shape in shapes}
    if len(firsts) != 1:
        return None
    first = firsts.pop()
    return first if first is not None and first > 0 else None
