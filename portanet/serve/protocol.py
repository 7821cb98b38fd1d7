"""The Open Inference Protocol (KServe V2) over REST: request parsing and response building.

Pure functions over bytes, numpy and orjson: no HTTP here. Tensors arrive as JSON data (flat or
nested, row-major) or through the *binary tensor data* extension (a JSON header of
``Inference-Header-Content-Length`` bytes followed by raw little-endian tensors, each input
saying its ``binary_data_size``); outputs go back the same two ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson

from portanet.serve.datatypes import DATATYPES, ModelOutputError, ProtocolError, datatype_of
from portanet.serve.json_fast import MIN_BYTES, LazyData, parse_large
from portanet.serve.json_tensors import (
    bools_in_data,
    loads,
    tensor_from_json,
    tensor_from_values,
    whole_bytes,
)

__all__ = [
    "DATATYPES",
    "InferRequest",
    "ModelOutputError",
    "ProtocolError",
    "RequestedOutput",
    "build_infer_response",
    "datatype_of",
    "error_body",
    "parse_infer_request",
    "split_bytes",
    "tensor_output",
]


@dataclass
class RequestedOutput:
    """One entry of a request's ``outputs``: a name and whether it goes back as binary data."""

    name: str
    binary: bool


@dataclass
class InferRequest:
    """A parsed infer request: input arrays in request order, selected outputs, id."""

    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    binary_output: bool = False
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise ProtocolError(
            f"{where}: expected 'shape' as a list of non-negative integers, got {value!r:.80}"
        )
    return tuple(value)


def _tensor_data(
    data: Any, dtype: np.dtype, shape: tuple[int, ...], where: str, has_bools: Any
) -> np.ndarray:
    """An input's JSON ``data`` as a checked array (numbers read by simdjson when they could
    be, :mod:`portanet.serve.json_fast`)."""
    if isinstance(data, LazyData):
        values = data.floats() if dtype.kind == "f" else None
        if values is not None:
            return tensor_from_values(values, dtype, shape, where)
        return tensor_from_json(data.as_list(), dtype, shape, where, True)
    return tensor_from_json(data, dtype, shape, where, has_bools())


def parse_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header + binary tensors)."""
    view = memoryview(body)
    binary = view[0:0]
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise ProtocolError(
                f"expected Inference-Header-Content-Length between 1 and the "
                f"body's {len(body)} bytes, got {header_length}"
            )
        binary = view[header_length:]
        view = view[:header_length]
    doc = parse_large(whole_bytes(view)) if len(view) >= MIN_BYTES else None
    if doc is None:
        doc = loads(view)
    if not isinstance(doc, dict):
        raise ProtocolError(f"expected a JSON object with 'inputs', got {type(doc).__name__}")
    raw_inputs = doc.get("inputs")
    bools: list[bool] = []

    def has_bools() -> bool:  # a count over the whole text: only when JSON data needs it
        if not bools:
            bools.append(bools_in_data(view, doc))
        return bools[0]

    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError(
            f"expected 'inputs' as a non-empty list of tensors, got {raw_inputs!r:.80}"
        )
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(raw_inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError(
                f"inputs[{index}]: expected an object with a string 'name', got {tensor!r:.80}"
            )
        name = tensor["name"]
        where = f"input {name!r}"
        if name in inputs:
            raise ProtocolError(f"{where}: expected each input once, got it twice")
        shape = _shape(tensor.get("shape"), where)
        datatype = tensor.get("datatype")
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if datatype == "BYTES":
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise ProtocolError(
                    f"{where}: expected BYTES (encoded images) as binary data (parameters."
                    f"binary_data_size within the body, binary_data=True in the client), got "
                    f"{'JSON data' if size is None else f'binary_data_size {size!r}'}"
                )
            inputs[name] = split_bytes(binary[offset : offset + size], shape, where)
            offset += size
            continue
        dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
        if dtype is None:
            raise ProtocolError(
                f"{where}: expected a numeric datatype "
                f"({', '.join(DATATYPES)}) or BYTES, got {datatype!r:.40}"
            )
        if size is not None:
            need = math.prod(shape) * dtype.itemsize
            if type(size) is not int or size != need:
                raise ProtocolError(
                    f"{where}: expected binary_data_size {need} for shape "
                    f"{list(shape)} of {datatype}, got {size!r}"
                )
            if offset + size > len(binary):
                raise ProtocolError(
                    f"{where}: expected {size} bytes of binary data, got "
                    f"{max(0, len(binary) - offset)} after the JSON header"
                )
            array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
        elif "data" in tensor:
            array = _tensor_data(tensor["data"], dtype, shape, where, has_bools)
        else:
            raise ProtocolError(
                f"{where}: expected 'data' or parameters.binary_data_size, got neither"
            )
        inputs[name] = array
    if offset != len(binary):
        raise ProtocolError(
            f"expected {offset} bytes of binary tensor data after the JSON "
            f"header, got {len(binary)}"
        )
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"expected 'parameters' as an object, got {parameters!r:.60}")
    outputs: list[RequestedOutput] | None = None
    if "outputs" in doc:
        raw_outputs = doc["outputs"]
        if not isinstance(raw_outputs, list):
            raise ProtocolError(f"expected 'outputs' as a list, got {raw_outputs!r:.60}")
        outputs = []
        for item in raw_outputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(
                    f"expected each of 'outputs' as an object with a string "
                    f"'name', got {item!r:.60}"
                )
            if any(o.name == item["name"] for o in outputs):
                raise ProtocolError(
                    f"output {item['name']!r}: expected each requested output once, got it twice"
                )
            params = item.get("parameters") or {}
            if isinstance(params, dict) and params.get("classification") is not None:
                raise ProtocolError(
                    f"output {item['name']!r}: expected no 'classification' parameter "
                    f"(class_count: the classification extension is not supported; ask for "
                    f"the raw output and rank it client-side), got {params['classification']!r:.20}"
                )
            binary_flag = (
                bool(params.get("binary_data", False)) if isinstance(params, dict) else False
            )
            outputs.append(RequestedOutput(item["name"], binary_flag))
    return InferRequest(
        inputs,
        outputs,
        bool(parameters.get("binary_data_output", False)),
        _request_id(doc.get("id")),
        parameters,
    )


def _request_id(value: Any) -> str | None:
    """The request's ``id`` as the string the spec makes it (numbers as their JSON text)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return orjson.dumps(value).decode()
    raise ProtocolError(f"expected 'id' as a string, got {type(value).__name__} {value!r:.40}")


def split_bytes(data: memoryview, shape: tuple[int, ...], where: str) -> np.ndarray:
    """BYTES elements of the binary extension (each a 4-byte little-endian length, then the
    bytes) as an object array of ``bytes`` in ``shape``."""
    count = math.prod(shape)
    items: list[bytes] = []
    position = 0
    raw = data.tobytes() if count else b""
    for index in range(count):
        if position + 4 > len(raw):
            raise ProtocolError(
                f"{where}: expected {count} length-prefixed BYTES elements, got {index}"
            )
        length = int.from_bytes(raw[position : position + 4], "little")
        position += 4
        if position + length > len(raw):
            raise ProtocolError(
                f"{where}: BYTES element {index}: expected {length} bytes, got "
                f"{len(raw) - position}"
            )
        items.append(raw[position : position + length])
        position += length
    if position != len(data):
        raise ProtocolError(
            f"{where}: expected {position} bytes for {count} BYTES elements, got {len(data)}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _plain(array: np.ndarray) -> np.ndarray | list[Any]:
    """Data orjson can write (it writes C-contiguous numeric arrays itself, not float16)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype == np.float16 or flat.dtype.kind not in "biuf":
        return cast(list[Any], flat.tolist())
    return flat


def tensor_output(model_name: str, name: str, value: Any) -> np.ndarray:
    """A model output as the tensor the protocol carries, or :class:`ModelOutputError`."""
    if isinstance(value, np.ndarray):
        return value
    kind = type(value).__name__
    if isinstance(value, list) and value:
        kind += f" of {type(value[0]).__name__}"
    raise ModelOutputError(
        f"model {model_name!r}: output {name!r}: expected a tensor, got a {kind} (an ONNX "
        f"sequence or map, e.g. a classifier's ZipMap: the Open Inference Protocol carries "
        f"tensors only; convert the model without it, skl2onnx: options={{'zipmap': False}})"
    )


def build_infer_response(
    model_name: str, version: str, request: InferRequest, results: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body and, when binary outputs follow the JSON, the JSON header's length."""
    wanted = request.outputs or [RequestedOutput(n, request.binary_output) for n in results]
    outputs = []
    blobs: list[bytes] = []
    for item in wanted:
        array = tensor_output(model_name, item.name, results[item.name])
        entry: dict[str, Any] = {
            "name": item.name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if item.binary and array.dtype.kind in "biuf":
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _plain(array)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = outputs
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def error_body(message: str) -> bytes:
    """The protocol's error body: ``{"error": "..."}``."""
    return orjson.dumps({"error": message})
