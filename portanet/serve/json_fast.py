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

from typing import Any

import numpy as np

from portanet.serve.json_tensors import count_byte

try:  # the serve extra's; without it every body takes the ordinary path
    import simdjson
except ImportError:  # pragma: no cover - installed with portanet[serve]
    simdjson = None  # type: ignore[assignment]

#: Bodies (or binary requests' JSON headers) at least this large are parsed with simdjson.
MIN_BYTES = 64 * 1024


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
    try:
        root = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):
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
    if count_byte(raw, b"[") != arrays + _brackets(doc):
        return None  # a nested data array (or a duplicate key): the ordinary reader decides
    return doc


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
