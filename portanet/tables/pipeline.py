"""Overlap reading with predicting and writing: an iterator run ahead in a background thread.

pyarrow's CSV parser, numpy's copies and onnxruntime all release the GIL, so while the caller
predicts and writes one batch, the next one is being parsed. Memory stays bounded: at most
``depth`` batches wait in the queue (plus the one being made).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield the items of ``items``, computed ahead in a background thread.

    The items come in order; an exception raised while producing them is raised here, at the
    point where the item would have come. When the consumer stops early (an error of its own,
    or ``close()``), the producer stops after its current item, closes ``items`` in its own
    thread, and is waited for, so that no thread outlives the call.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not _put(slots, item, stop):
                    break
            else:
                _put(slots, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, raised there
            _put(slots, _Failure(exc), stop)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="portanet-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting for room
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.05)
        worker.join()


def _put(slots: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Queue ``item`` unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            slots.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
