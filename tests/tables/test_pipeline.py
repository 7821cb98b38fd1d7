"""The prefetching iterator that overlaps reading with predicting and writing."""

from __future__ import annotations

import threading
import time

import pytest

from portanet.errors import InputError
from portanet.tables.pipeline import prefetch


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "portanet-prefetch"]


def test_items_come_in_order_and_ahead_of_the_consumer():
    produced: list[int] = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(source(), depth=3):
        if item == 0:
            time.sleep(0.5)  # the producer runs ahead meanwhile, up to the queue's depth
            assert 3 <= len(produced) <= 5
        seen.append(item)
    assert seen == list(range(50)) and not _workers()


def test_an_error_while_producing_arrives_where_its_item_would_have():
    def source():
        yield 1
        yield 2
        raise InputError("rows.csv: line 3, column 'age': expected a finite number")

    seen = []
    with pytest.raises(InputError, match="line 3"):
        for item in prefetch(source()):
            seen.append(item)
    assert seen == [1, 2] and not _workers()


@pytest.mark.parametrize("how", ["break", "raise"])
def test_a_consumer_that_stops_early_stops_and_closes_the_producer(how):
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()  # runs in the producer's thread, before prefetch returns

    class Stop(Exception):
        pass

    with pytest.raises(Stop) if how == "raise" else _nothing():
        for item in prefetch(source()):
            if item == 5:
                if how == "raise":
                    raise Stop
                break
    assert closed.is_set() and not _workers()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
