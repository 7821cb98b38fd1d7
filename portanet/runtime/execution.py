"""How validated feeds reach onnxruntime, fast and with bounded memory (public API only).

* **Small batches** of a single-input model go through an ``IOBinding`` that each thread keeps
  per input shape, bound once to buffers it owns: a call copies the rows in, runs, and copies
  the outputs out, skipping the per-call conversions of ``InferenceSession.run``.
* **Large batches** run in chunks sized by the bytes a row weighs (:func:`chunk_rows_for`): small
  enough for a row-wise model's intermediate tensors to stay in the CPU caches, and never more
  than :data:`MAX_CHUNK_BYTES` of input per call, so that memory stays bounded for big rows such
  as images. Every chunk after the first writes straight into one preallocated output.
* **Fixed-batch models** (exported with, say, batch size 1) take any number of rows: the rows
  run in chunks of exactly that size, the last one padded with copies of its last row, and the
  padding's outputs dropped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from portanet.errors import InputError, first_line
from portanet.runtime.inputs import check_finite

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
        if self.fixed_batch is not None:
            step = self.fixed_batch
        elif chunk_rows:
            step = chunk_rows
        else:
            step = chunk_rows_for(sum(v.nbytes // max(rows, 1) for v in feeds.values()))
        if rows == step or (rows < step and self.fixed_batch is None):
            self._check(feeds, check, 0)
            return self.run_plain(feeds)
        return self._chunked(feeds, rows, step, check)

    def _check(self, feeds: dict[str, np.ndarray], names: Iterable[str], offset: int) -> None:
        for name in names:
            if not all_finite(feeds[name]):
                check_finite(name, feeds[name], offset)

    def _chunked(
        self, feeds: dict[str, np.ndarray], rows: int, step: int, check: Iterable[str]
    ) -> list[np.ndarray]:
        out: list[np.ndarray] | None = None
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            part = {k: v[start:stop] for k, v in feeds.items()}
            self._check(part, check, start)
            short = self.fixed_batch is not None and stop - start < step
            if short:  # pad with copies of the last row; the padding's outputs are dropped
                part = {
                    k: np.concatenate([v, np.repeat(v[-1:], step - len(v), axis=0)])
                    for k, v in part.items()
                }
            if out is None or short or not self.bindable:
                results = self.run_plain(part)
                self._check_rows(results, len(next(iter(part.values()))))
                if out is None:
                    out = [np.empty((rows, *r.shape[1:]), dtype=r.dtype) for r in results]
                for target, result in zip(out, results, strict=False):
                    target[start:stop] = result[: stop - start]
            else:
                self._run_into(part, [target[start:stop] for target in out])
        assert out is not None  # rows > 0 here
        return out

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
