"""The floor for any Python image server on this machine: binary infer requests, nothing else.

uvloop + httptools (what ``portanet serve`` runs on), one single-threaded onnxruntime session
per CPU with spin-waiting off, each request run as it arrives on a free session's thread, and
no checks at all: no validation, no batching, no metrics, no limits. ``serve_images.py`` runs
it beside ``portanet serve`` with the same load generator to show how much of the distance to
the bare onnxruntime loop any Python HTTP server pays on these cores (the load generator's
share, socket copies, the GIL hand-offs) and how much is portanet's own. A benchmark tool only:
it answers every GET with 200 and trusts every POST. Usage::

    python benchmarks/floor_server.py MODEL.onnx PORT
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httptools
import numpy as np
import onnxruntime as ort
import orjson
import uvloop


def open_sessions(path: str, count: int) -> list[ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return [
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(count)
    ]


class FloorProtocol(asyncio.Protocol):
    """One keep-alive connection: parse with httptools, answer each request in order."""

    sessions: asyncio.Queue[ort.InferenceSession]
    pool: ThreadPoolExecutor
    input_name: str
    output_name: str

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.pieces: list[bytes] = []
        self.header_length = 0

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.pieces, self.header_length = [], 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"inference-header-content-length":
            self.header_length = int(value)

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        loop = asyncio.get_running_loop()
        if self.parser.get_method() == b"GET":
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            return
        body = b"".join(self.pieces)
        loop.create_task(self.infer(body, self.header_length))

    async def infer(self, body: bytes, header_length: int) -> None:
        head = orjson.loads(body[:header_length])
        shape = head["inputs"][0]["shape"]
        tensor = np.frombuffer(body, "<f4", offset=header_length).reshape(shape)
        session = await self.sessions.get()
        try:
            loop = asyncio.get_running_loop()
            output = await loop.run_in_executor(
                self.pool, lambda: session.run([self.output_name], {self.input_name: tensor})[0]
            )
        finally:
            self.sessions.put_nowait(session)
        blob = np.ascontiguousarray(output, "<f4").tobytes()
        answer = orjson.dumps(
            {
                "model_name": "floor",
                "outputs": [
                    {
                        "name": self.output_name,
                        "datatype": "FP32",
                        "shape": list(output.shape),
                        "parameters": {"binary_data_size": len(blob)},
                    }
                ],
            }
        )
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
            b"inference-header-content-length: %d\r\ncontent-length: %d\r\n\r\n"
            % (len(answer), len(answer) + len(blob))
            + answer
            + blob
        )


async def serve(path: str, port: int) -> None:
    cpus = len(os.sched_getaffinity(0))
    sessions = open_sessions(path, cpus)
    FloorProtocol.sessions = asyncio.Queue()
    for session in sessions:
        FloorProtocol.sessions.put_nowait(session)
    FloorProtocol.pool = ThreadPoolExecutor(cpus)
    FloorProtocol.input_name = sessions[0].get_inputs()[0].name
    FloorProtocol.output_name = sessions[0].get_outputs()[0].name
    server = await asyncio.get_running_loop().create_server(FloorProtocol, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
