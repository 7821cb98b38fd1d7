"""Checks an ONNX file before onnxruntime opens it (runtime side: no ``onnx`` package needed).

* Size limits, configurable (:class:`Limits`).
* External data: every ``location`` must be a relative path that resolves — symlinks followed —
  to a file inside the model's own folder. ``..``, absolute paths and links leading out are
  refused, so a model file cannot make onnxruntime read arbitrary host files.

The protobuf wire format is read directly, skipping tensor payloads, so this is cheap even for
large models, and a malformed file is a :class:`ModelLoadError`, never a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from portanet.errors import ModelLoadError, UnsafeModelError

# Field numbers from onnx.proto3 (stable since ONNX IR 3).
_MODEL_GRAPH, _MODEL_OPSET_IMPORT, _MODEL_FUNCTIONS = 7, 8, 25
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA = 8, 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_FUNCTION_NODE = 7
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Limits:
    """Size limits for model files (bytes). Raise them for very large models."""

    max_model_bytes: int = 4 << 30
    max_external_bytes: int = 64 << 30


DEFAULT_LIMITS = Limits()


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> list[tuple[int, memoryview | None]]:
    """(field number, payload for length-delimited fields else None) of one message."""
    out: list[tuple[int, memoryview | None]] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            _, pos = _varint(data, pos)
            out.append((number, None))
        elif wire == 1:
            pos += 8
            out.append((number, None))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise _Malformed("length past the end of the message")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire == 5:
            pos += 4
            out.append((number, None))
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > end:
            raise _Malformed("field past the end of the message")
    return out


def _tensor_locations(tensor: memoryview, found: list[tuple[str, str]]) -> None:
    name = ""
    for number, payload in _fields(tensor):
        if number == _TENSOR_NAME and payload is not None:
            name = bytes(payload).decode("utf-8", "replace")
        elif number == _TENSOR_EXTERNAL_DATA and payload is not None:
            entry = dict((n, p) for n, p in _fields(payload) if p is not None)
            key = bytes(entry.get(_ENTRY_KEY, b"")).decode("utf-8", "replace")
            if key == "location":
                found.append((name, bytes(entry.get(_ENTRY_VALUE, b"")).decode("utf-8", "replace")))


def _sparse_locations(sparse: memoryview, found: list[tuple[str, str]]) -> None:
    for number, payload in _fields(sparse):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES) and payload is not None:
            _tensor_locations(payload, found)


def _graph_locations(graph: memoryview, found: list[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Malformed("graphs nested too deeply")
    for number, payload in _fields(graph):
        if payload is None:
            continue
        if number == _GRAPH_INITIALIZER:
            _tensor_locations(payload, found)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse_locations(payload, found)
        elif number == _GRAPH_NODE:
            _node_locations(payload, found, depth)


def _node_locations(node: memoryview, found: list[tuple[str, str]], depth: int) -> None:
    for number, payload in _fields(node):
        if number != _NODE_ATTRIBUTE or payload is None:
            continue
        for attr_number, attr in _fields(payload):
            if attr is None:
                continue
            if attr_number in (_ATTR_T, _ATTR_TENSORS):
                _tensor_locations(attr, found)
            elif attr_number in (_ATTR_G, _ATTR_GRAPHS):
                _graph_locations(attr, found, depth + 1)
            elif attr_number in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                _sparse_locations(attr, found)


def external_locations(data: bytes | memoryview, origin: str = "model") -> list[tuple[str, str]]:
    """(tensor name, location) of every external-data reference in a serialized ModelProto."""
    view = memoryview(data)
    found: list[tuple[str, str]] = []
    try:
        for number, payload in _fields(view):
            if payload is None:
                continue
            if number == _MODEL_GRAPH:
                _graph_locations(payload, found, 0)
            elif number == _MODEL_FUNCTIONS:
                for inner, node in _fields(payload):
                    if inner == _FUNCTION_NODE and node is not None:
                        _node_locations(node, found, 1)
    except _Malformed as exc:
        raise ModelLoadError(
            f"{origin}: expected an ONNX model (protobuf), got malformed data ({exc})"
        ) from None
    return found


def check_model_bytes(
    data: bytes, origin: str, *, folder: Path | None, limits: Limits = DEFAULT_LIMITS
) -> list[Path]:
    """Refuse oversized models and external data outside ``folder``; returns the data files.

    ``folder`` is the model's directory (``None`` for in-memory bytes, where any external
    reference is refused since nothing anchors it).
    """
    if len(data) > limits.max_model_bytes:
        raise ModelLoadError(
            f"{origin}: expected at most {limits.max_model_bytes:,} bytes "
            f"(Limits.max_model_bytes), got {len(data):,}"
        )
    files: list[Path] = []
    total = 0
    base = folder.resolve() if folder is not None else None
    for tensor, location in external_locations(data, origin):
        where = f"{origin}: tensor {tensor!r} keeps its data in {location!r}"
        if base is None:
            raise UnsafeModelError(
                f"{where}: external data needs a model loaded from its file "
                f"path, got in-memory bytes"
            )
        relative = Path(location)
        if not location or relative.is_absolute() or ".." in relative.parts or "\0" in location:
            raise UnsafeModelError(
                f"{where}: expected a relative path inside the model's "
                f"folder, got one that leaves it"
            )
        resolved = (base / relative).resolve()
        if not resolved.is_relative_to(base):
            raise UnsafeModelError(
                f"{where}: expected a file inside {base}, but it resolves "
                f"(through a symbolic link) to {resolved}"
            )
        if not resolved.is_file():
            raise ModelLoadError(f"{where}: expected that file beside the model, got none")
        if resolved not in files:
            files.append(resolved)
            total += os.path.getsize(resolved)
    if total > limits.max_external_bytes:
        raise ModelLoadError(
            f"{origin}: expected at most {limits.max_external_bytes:,} bytes "
            f"of external data (Limits.max_external_bytes), got {total:,}"
        )
    return files


def opset_imports(data: bytes | memoryview, origin: str = "model") -> dict[str, int]:
    """The operator sets a serialized ModelProto imports: domain (``ai.onnx`` for the default
    one) → version, read from the wire format like everything here."""
    view = memoryview(data)
    found: dict[str, int] = {}
    try:
        for number, payload in _fields(view):
            if number != _MODEL_OPSET_IMPORT or payload is None:
                continue
            domain, version, pos = "", 0, 0
            while pos < len(payload):
                key, pos = _varint(payload, pos)
                if key == (_OPSET_DOMAIN << 3 | 2):
                    size, pos = _varint(payload, pos)
                    domain = bytes(payload[pos : pos + size]).decode("utf-8", "replace")
                    pos += size
                elif key == (_OPSET_VERSION << 3 | 0):
                    version, pos = _varint(payload, pos)
                else:
                    raise _Malformed(f"unexpected field {key >> 3} in an opset import")
            found[domain or "ai.onnx"] = version
    except _Malformed as exc:
        raise ModelLoadError(
            f"{origin}: expected an ONNX model (protobuf), got malformed data ({exc})"
        ) from None
    return found
