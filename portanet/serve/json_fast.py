"""Large JSON request bodies parsed with simdjson, tensor data read straight into numpy.

An image sent as JSON is ~150,000 numbers (3 MB): orjson makes a Python float of each and numpy
then copies them into an array — measured here 20 ms against 3.3 ms for simdjson's parse and
``Array.as_buffer`` (pysimdjson, which writes the numbers of a JSON array into a buffer of
doubles without Python objects). :func:`parse_large` parses a body with simdjson and returns
the document as Python objects except each input's ``data``, left as :class:`LazyData`.

``as_buffer`` flattens nested arrays, so a ragged ``[[5, 6], []]`` would pass as ``[5, 6]``: a
document is taken only when its ``[`` characters are exactly its arrays outside the data plus
one per data array (every data array flat), and bodies with an escaped bracket are left alone.
Anything simdjson refuses (``NaN`` literals, depth, malformed text) returns None, and the
ordinary reader (:func:`portanet.serve.json_tensors.loads`) answers it exactly as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

try:  # the serve extra's; without it every body takes the ordinary path
    import simdjson
except ImportError:  # pragma: no cover - installed with portanet[serve]
    simdjson = None  # type: ignore[assignment]

#: Bodies (or binary requests' JSON headers) at least this large are parsed with simdjson.
MIN_BYTES = 64 * 1024
#: Bodies up to this size are parsed by a parser kept for the next request; larger ones get a
#: parser of their own, freed afterwards. A kept parser holds what its largest body needed:
#: measured, 3.6 MB after a 3 MB JSON image, 52 MB after a crafted 4 MiB body of two million
#: one-digit numbers (the worst case: its tape grows with the count of values).
POOLED_MAX_BYTES = 4 * 1024 * 1024
#: Parsers kept per thread (the server decodes on at most 4 threads): a request's document is
#: released before its thread takes the next body, and a parser still busy is passed over.
POOLED_PER_THREAD = 1

_pools = threading.local()


def _parsers() -> Iterator[Any]:
    """This thread's kept parsers, then (when all are busy) a new one, kept when room is left.

    A fresh ``simdjson.Parser`` per body allocates its index and tape anew, and their pages
    fault in one by one: measured, 90 % of the page faults and a quarter of the server's CPU
    under 16 clients sending 3 MB JSON images. A kept parser reuses its buffers; simdjson
    refuses (``RuntimeError``) to reuse one whose last document is still referenced."""
    pool: list[Any] = getattr(_pools, "parsers", None) or []
    _pools.parsers = pool
    yield from list(pool)
    parser = simdjson.Parser()
    if len(pool) < POOLED_PER_THREAD:
        pool.append(parser)
    yield parser


class LazyData:
    """An input's ``data`` array as simdjson parsed it, read on demand."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def floats(self) -> np.ndarray | None:
        """The values as float64 when the array holds only numbers, else None."""
        try:
            values = np.frombuffer(self._array.as_buffer(of_type="d"), np.float64)
        except (TypeError, ValueError):  # true/false, null, strings: not numbers
            return None
        return values if values.size == len(self._array) else None

    def as_list(self) -> list[Any]:
        """The array as Python objects (what orjson would have made of it)."""
        return list(self._array.as_list())


def parse_large(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in ``raw`` with each input's ``data`` as :class:`LazyData`, or None when
    simdjson is missing, the body is small, or anything about it needs the ordinary reader."""
    if simdjson is None or len(raw) < MIN_BYTES:
        return None
    if b"\\" in raw and b"\\u005" in raw:  # "\u005b" is a "[" the count below cannot see
        return None
    root = _parse(raw)
    if root is None:
        return None
    if not isinstance(root, simdjson.Object):
        return None
    doc: dict[str, Any] = {}
    arrays = 0
    keys = list(root)  # keys, then values by key: items() would convert them to Python objects
    if len(set(keys)) != len(keys):
        return None  # a duplicate key: simdjson gives the first value, orjson the last
    for key in keys:
        value = root[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            tensors: list[Any] = []
            for tensor in value:
                if not isinstance(tensor, simdjson.Object):
                    tensors.append(_plain(tensor))
                    continue
                entry: dict[str, Any] = {}
                names = list(tensor)
                if len(set(names)) != len(names):
                    return None
                for name in names:
                    item = tensor[name]
                    if name == "data" and isinstance(item, simdjson.Array):
                        entry[name] = LazyData(item)
                        arrays += 1
                    else:
                        entry[name] = _plain(item)
                tensors.append(entry)
            doc[key] = tensors
        else:
            doc[key] = _plain(value)
    expected = arrays + _brackets(doc)
    if _count_up_to(raw, ord("["), expected + 1) != expected:
        return None  # a nested data array (or a duplicate key): the ordinary reader decides
    return doc


def _count_up_to(raw: bytes, byte: int, limit: int) -> int:
    """How many times ``byte`` occurs in ``raw``, counting no further than ``limit``: a few
    ``find`` calls (memchr, 0.03 ms for a 3 MB body) where a full count costs 0.2 ms."""
    count, at = 0, raw.find(byte)
    while at != -1 and count < limit:
        count += 1
        at = raw.find(byte, at + 1)
    return count


def _parse(raw: bytes) -> Any:
    """simdjson's document for ``raw`` from a free kept parser (or a fresh one for a large
    body), None when simdjson refuses the text."""
    parsers = _parsers() if len(raw) <= POOLED_MAX_BYTES else iter([simdjson.Parser()])
    for parser in parsers:
        try:
            return parser.parse(raw)
        except RuntimeError as exc:
            if "re-use a parser" in str(exc):
                continue  # busy: its last document is still referenced
            return None
        except ValueError:
            return None
    return None  # pragma: no cover - the last parser is always a fresh one


def _plain(value: Any) -> Any:
    """A simdjson value as Python objects."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _brackets(node: Any) -> int:
    """The ``[`` a document's text needs for ``node``: one per list, and those in strings."""
    if isinstance(node, list):
        return 1 + sum(_brackets(item) for item in node)
    if isinstance(node, dict):
        return sum(key.count("[") + _brackets(item) for key, item in node.items())
    if isinstance(node, str):
        return node.count("[")
    return 0
