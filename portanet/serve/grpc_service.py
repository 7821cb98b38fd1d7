"""The KServe V2 gRPC service on the same models, queues and batches as the REST app.

grpcio's server runs the handlers in its own threads: a request's tensors are read and checked
there (off the event loop, like the REST app's decode threads), then handed to the app's event
loop to join a batch, and the handler thread waits for the answer. Tensors come as
``raw_input_contents`` (binary, as ``tritonclient.grpc`` sends them) or typed ``contents``;
outputs go back as ``raw_output_contents``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

import portanet
from portanet.errors import InputError, PortanetError
from portanet.serve.app import ServeApp
from portanet.serve.failures import log_internal_error
from portanet.serve.grpc import inference_pb2 as pb
from portanet.serve.grpc import inference_pb2_grpc as pb_grpc
from portanet.serve.protocol import (
    DATATYPES,
    ModelOutputError,
    ProtocolError,
    datatype_of,
    split_bytes,
    tensor_output,
)
from portanet.serve.repository import VERSION, ServedModel

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
#: Which ``InferTensorContents`` field holds each datatype.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def read_inputs(request: Any, max_elements: int) -> dict[str, np.ndarray]:
    """The request's input tensors, element counts checked before any array is built."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            f"expected one raw_input_contents entry per input ({len(request.inputs)}), "
            f"got {len(raw)}"
        )
    total = 0
    for tensor in request.inputs:
        if any(d < 0 for d in tensor.shape):
            raise ProtocolError(f"input {tensor.name!r}: expected a shape of non-negative sizes")
        total += math.prod(tensor.shape)
    if total > max_elements:
        raise ProtocolError(
            f"expected at most {max_elements:,} tensor elements (raise --max-elements), got "
            f"{total:,} declared",
            413,
        )
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        where = f"input {tensor.name!r}"
        if tensor.name in tensors:
            raise ProtocolError(f"{where}: expected each input once, got it twice")
        shape = tuple(tensor.shape)
        datatype = tensor.datatype
        if datatype == "BYTES":
            if raw:
                array = split_bytes(memoryview(raw[index]), shape, where)
            else:
                items = list(tensor.contents.bytes_contents)
                if len(items) != math.prod(shape):
                    raise ProtocolError(
                        f"{where}: shape {list(shape)} needs {math.prod(shape)} values, got "
                        f"{len(items)}"
                    )
                array = np.empty(len(items), dtype=object)
                array[:] = items
                array = array.reshape(shape)
        elif datatype in DATATYPES:
            dtype = DATATYPES[datatype]
            if raw:
                need = math.prod(shape) * dtype.itemsize
                if len(raw[index]) != need:
                    raise ProtocolError(
                        f"{where}: expected {need} raw bytes for shape {list(shape)} of "
                        f"{datatype}, got {len(raw[index])}"
                    )
                array = np.frombuffer(raw[index], dtype=dtype).reshape(shape)
            else:
                field = _CONTENTS.get(datatype)
                values = getattr(tensor.contents, field) if field else []
                if len(values) != math.prod(shape):
                    raise ProtocolError(
                        f"{where}: shape {list(shape)} needs {math.prod(shape)} values of "
                        f"{datatype} in contents.{field or 'raw_input_contents (FP16)'}, got "
                        f"{len(values)}"
                    )
                array = np.asarray(values, dtype=dtype).reshape(shape)
        else:
            raise ProtocolError(
                f"{where}: expected a datatype ({', '.join(DATATYPES)}, BYTES), got "
                f"{datatype!r:.40}"
            )
        tensors[tensor.name] = array
    return tensors


def requested_outputs(request: Any, served: ServedModel) -> list[str]:
    """The outputs to return (all by default), each named once and known."""
    names: list[str] = []
    for item in request.outputs:
        if item.name in names:
            raise ProtocolError(
                f"output {item.name!r}: expected each requested output once, got it twice"
            )
        if "classification" in item.parameters:
            raise ProtocolError(
                f"output {item.name!r}: expected no 'classification' parameter (class_count: "
                f"the classification extension is not supported)"
            )
        if item.name not in served.output_names:
            raise ProtocolError(
                f"model {served.name!r}: unknown output {item.name!r}; expected one of "
                f"{served.output_names}"
            )
        names.append(item.name)
    return names or list(served.output_names)


def _raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for item in array.reshape(-1).tolist():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six V2 RPCs over a :class:`ServeApp` running on ``loop``."""

    def __init__(self, app: ServeApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    def _model(self, name: str, version: str, context: Any) -> ServedModel:
        served = self.app.models.get(name)
        if served is None:
            context.abort(grpc.StatusCode.NOT_FOUND, self.app._unknown(name))
        if version and version != VERSION:
            context.abort(grpc.StatusCode.NOT_FOUND, self.app._unknown(name, version))
        return served  # type: ignore[return-value]

    def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (the protocol's name)
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=not self.app.draining)

    def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        self._model(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=not self.app.draining)

    def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(
            name="portanet", version=portanet.__version__, extensions=["binary_tensor_data"]
        )

    def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        doc = self._model(request.name, request.version, context).metadata()
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[tensor(**t) for t in doc["inputs"]],
            outputs=[tensor(**t) for t in doc["outputs"]],
        )

    def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        start = time.perf_counter()
        debug = self.app.options.debug
        served = self._model(request.model_name, request.model_version, context)
        status, code, message = 200, grpc.StatusCode.OK, ""
        try:
            tensors = read_inputs(request, self.app.options.max_elements)
            names = requested_outputs(request, served)
            feeds, rows = served.prepare(
                tensors,
                allow_nan=self.app.options.allow_nan,
                max_elements=self.app.options.max_elements,
            )
            assert self.loop is not None
            future = asyncio.run_coroutine_threadsafe(
                self.app.run_prepared(served, feeds, rows), self.loop
            )
            outputs = future.result()
            results = {n: tensor_output(served.name, n, outputs[n]) for n in names}
        except ModelOutputError as exc:
            log_internal_error(f"model {served.name}: gRPC infer answered INTERNAL", exc, debug)
            status, code, message = 500, grpc.StatusCode.INTERNAL, str(exc)
        except ProtocolError as exc:
            status, message = exc.status, str(exc)
            code = _STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
        except (PortanetError, InputError) as exc:
            status, code, message = 400, grpc.StatusCode.INVALID_ARGUMENT, f"{served.name}: {exc}"
        except Exception as exc:
            log_internal_error(f"model {served.name}: gRPC infer answered INTERNAL", exc, debug)
            status, code = 500, grpc.StatusCode.INTERNAL
            message = f"model {served.name!r}: internal server error (the server log has it)"
        self.app.metrics.observe_request(served.name, status, time.perf_counter() - start)
        if status != 200:
            context.abort(code, message)
        response = pb.ModelInferResponse(
            model_name=served.name, model_version=VERSION, id=request.id
        )
        for name in names:
            array = results[name]
            response.outputs.add(
                name=name, datatype=datatype_of(array.dtype), shape=list(array.shape)
            )
            response.raw_output_contents.append(_raw(array))
        return response


class GrpcServer:
    """A grpcio server bound at construction (a taken port fails before serving starts)."""

    def __init__(self, app: ServeApp, host: str, port: int, threads: int = 32) -> None:
        limit = app.options.max_body_bytes
        self.servicer = InferenceServicer(app)
        self.server = grpc.server(
            ThreadPoolExecutor(threads, thread_name_prefix="portanet-grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, self.server)  # type: ignore[no-untyped-call]  # generated
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            self.port = 0
            reason = str(exc)
        else:
            reason = "the port is taken or not allowed"
        if not self.port:
            raise InputError(
                f"--grpc-port {port}: expected a port gRPC can listen on at {host}, got "
                f"{reason} (choose another --grpc-port, or 0 for any free one)"
            )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve, handing batches to the app's event loop ``loop``."""
        self.servicer.loop = loop
        self.server.start()

    def stop(self, grace: float) -> None:
        """Stop accepting calls; running ones get ``grace`` seconds."""
        self.server.stop(grace)


def grpc_line(host: str, servers: Sequence[GrpcServer]) -> str:
    """The startup line's gRPC part."""
    return "".join(f"; gRPC at {host}:{s.port}" for s in servers)
