"""Dynamic batching: concurrent requests to one model become one onnxruntime run.

Each request is validated before it joins the queue, so a batch only ever holds good requests.
The batcher takes the oldest request, waits until it has waited ``max_delay`` (or until enough
rows are queued), stacks compatible requests up to ``max_batch_size`` rows, runs them once and
hands every request its own rows back. Runs happen in a worker thread (onnxruntime releases the
GIL), except for models whose runs take well under a millisecond, which run on the event loop
where a thread hand-off would cost more than the run. The queue is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from portanet.serve.metrics import Metrics
from portanet.serve.protocol import ProtocolError
from portanet.serve.repository import ServedModel

log = logging.getLogger("portanet.serve")

#: Runs faster than this (moving average) happen on the event loop thread.
INLINE_SECONDS = 0.0005


class QueueFullError(ProtocolError):
    """The model's queue holds ``max_queue`` requests already (HTTP 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


@dataclass(eq=False)
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    signature: tuple[Any, ...]
    future: asyncio.Future[Any]
    arrived: float


class Batcher:
    """The queue and batching loop of one served model (create and use it in the event loop)."""

    def __init__(
        self,
        served: ServedModel,
        metrics: Metrics,
        *,
        max_batch_size: int = 64,
        max_delay_s: float = 0.002,
        max_queue: int = 1024,
    ) -> None:
        self.served = served
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max(0.0, max_delay_s)
        self.max_queue = max(1, max_queue)
        self.batching = served.batchable and self.max_batch_size > 1
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._waiter: asyncio.Future[Any] | None = None
        self._waiter_rows = 0
        self._task: asyncio.Task[Any] | None = None
        self._cut: str | None = None
        self._running: set[_Item] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Sessions not running a batch (indexes into ``served.sessions``).
        self._free = list(range(len(served.sessions)))
        self._freed: asyncio.Future[Any] | None = None
        self._executor = ThreadPoolExecutor(
            len(served.sessions), thread_name_prefix=f"portanet-{served.name}"
        )
        self._run_seconds = float("inf")  # moving average; infinite until measured
        #: Moving averages of seconds per row: one-row runs, stacked runs (0 until measured).
        self._per_row = [0.0, 0.0]
        self._batches = 0
        name = served.name
        self._rows_metric = metrics.batch_rows.labels(name)
        self._requests_metric = metrics.batch_requests.labels(name)
        self._depth_metric = metrics.queue_depth.labels(name)

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    def start(self) -> None:
        """Start the batching loop in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; requests still queued are answered with 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(
                    QueueFullError(
                        f"model {self.served.name!r}: the server stopped before this request ran"
                    )
                )
        self._executor.shutdown(wait=False)

    def cut(self, reason: str) -> None:
        """Answer every queued or running request 503 with ``reason``; refuse new ones."""
        self._cut = reason
        for item in [*self._pending, *self._running]:
            if not item.future.done():
                item.future.set_exception(
                    QueueFullError(
                        f"model {self.served.name!r}: {reason}; retry on another replica"
                    )
                )

    async def submit(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Queue validated feeds; return the model's outputs for exactly these rows."""
        if self._cut is not None:
            raise QueueFullError(f"model {self.served.name!r}: {self._cut}; retry elsewhere")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(
                f"model {self.served.name!r}: expected at most "
                f"{self.max_queue} requests waiting, got one more; the queue is "
                f"full, retry later"
            )
        loop = asyncio.get_running_loop()
        signature = tuple((k, v.shape[1:], v.dtype.str) for k, v in feeds.items())
        item = _Item(feeds, rows, signature, loop.create_future(), loop.time())
        self._pending.append(item)
        self._pending_rows += rows
        self._depth_metric.set(len(self._pending))
        waiter = self._waiter
        if (
            waiter is not None
            and not waiter.done()
            and (self._waiter_rows == 0 or self._pending_rows >= self._waiter_rows)
        ):
            waiter.set_result(None)
        return cast(dict[str, np.ndarray], await item.future)

    async def _wait(self, rows: int, deadline: float | None) -> None:
        """Sleep until a request arrives (``rows == 0``), ``rows`` are queued, or deadline."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._waiter_rows = rows
        handle = loop.call_at(deadline, self._wake) if deadline is not None else None
        try:
            await self._waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                await self._wait(0, None)
                continue
            if not self._free:
                self._freed = loop.create_future()
                await self._freed
                continue
            first = self._pending[0]
            # Several sessions running in threads: an idle session takes what is queued now
            # (waiting would idle it; the queue fills while the others run). One session, or
            # runs on the event loop: wait up to the delay for company.
            if self.batching and not self._parallel and self._pending_rows < self.max_batch_size:
                deadline = first.arrived + self.max_delay_s
                if deadline > loop.time():
                    await self._wait(self.max_batch_size, deadline)
            batch = self._take()
            session = self._free.pop()
            self._running.update(batch)
            if self._run_seconds < INLINE_SECONDS:
                await self._run_and_release(batch, session)
            else:  # runs on a session thread while the loop gathers the next batch
                task = loop.create_task(self._run_and_release(batch, session))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run_and_release(self, batch: list[_Item], session: int) -> None:
        try:
            await self._run(batch, session)
        except Exception as exc:  # never lose a request; each gets an answer
            log.exception("model %s: batch failed", self.served.name)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self._running.difference_update(batch)
            self._free.append(session)
            if self._freed is not None and not self._freed.done():
                self._freed.set_result(None)

    def _single_is_faster(self) -> bool:
        """Whether one-row runs have cost less per row than stacked ones (measured as the
        server runs; stacked runs are still tried one batch in 32 to follow changes)."""
        single, stacked = self._per_row
        self._batches += 1
        return single < stacked and self._batches % 32 != 0

    @property
    def _parallel(self) -> bool:
        """Whether batches run side by side (several sessions, runs too slow to inline)."""
        return len(self.served.sessions) > 1 and self._run_seconds >= INLINE_SECONDS

    def _take(self) -> list[_Item]:
        # The queue is shared out so that every session has a batch now and one waiting: all
        # rows in one batch would leave the other sessions idle, and the sessions idle again
        # while the answered clients send their next requests.
        share = 2 * len(self.served.sessions) if self._parallel else 1
        limit = min(self.max_batch_size, -(-self._pending_rows // share))
        if self._parallel and self._single_is_faster():
            limit = 1
        first = self._pending.popleft()
        batch, rows = [first], first.rows
        if self.batching:
            while self._pending:
                item = self._pending[0]
                if item.signature != first.signature or rows + item.rows > limit:
                    break
                batch.append(self._pending.popleft())
                rows += item.rows
        self._pending_rows -= rows
        self._depth_metric.set(len(self._pending))
        return batch

    def _infer(self, batch: list[_Item], session: int) -> tuple[dict[str, np.ndarray], float]:
        """Stack the batch's feeds (in the session's thread: large inputs cost a copy) and run
        them, timing the run."""
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {
                name: np.concatenate([item.feeds[name] for item in batch])
                for name in batch[0].feeds
            }
        start = time.perf_counter()
        # checked before queueing
        outputs = self.served.sessions[session].run(feeds, allow_nan=True)
        return outputs, time.perf_counter() - start

    async def _run(self, batch: list[_Item], session: int) -> None:
        rows = sum(item.rows for item in batch)
        try:
            if self._run_seconds < INLINE_SECONDS:
                outputs, seconds = self._infer(batch, session)
            else:
                loop = asyncio.get_running_loop()
                outputs, seconds = await loop.run_in_executor(
                    self._executor, self._infer, batch, session
                )
        except Exception as exc:
            if len(batch) > 1:  # a run-time failure: find the request it belongs to
                for item in batch:
                    await self._run([item], session)
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        which = 0 if rows == 1 else 1
        per_row = seconds / max(1, rows)
        old = self._per_row[which]
        self._per_row[which] = per_row if old == 0.0 else 0.8 * old + 0.2 * per_row
        self._run_seconds = (
            seconds
            if self._run_seconds == float("inf")
            else 0.9 * self._run_seconds + 0.1 * seconds
        )
        self._rows_metric.observe(rows)
        self._requests_metric.observe(len(batch))
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
            return
        if any(
            not isinstance(v, np.ndarray) or v.ndim == 0 or v.shape[0] != rows
            for v in outputs.values()
        ):
            for item in batch:  # outputs that do not follow the batch: run one by one
                await self._run([item], session)
            return
        offset = 0
        for item in batch:
            part = {name: value[offset : offset + item.rows] for name, value in outputs.items()}
            offset += item.rows
            if not item.future.done():
                item.future.set_result(part)
