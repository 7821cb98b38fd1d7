"""Fixtures for the server tests: real `portanet serve` processes on 127.0.0.1 (a free port
chosen by the system, read from the startup line), stopped by process id, and small ONNX
models built with the onnx package."""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PIMA = REPO / "models" / "pima_mlp.onnx"
_BOUND = re.compile(r"http://127\.0\.0\.1:(\d+)/")


def need_module(name: str):
    """Import a test dependency, or skip — fail instead when PORTANET_CI=1."""
    if os.environ.get("PORTANET_CI") == "1":
        return importlib.import_module(name)  # the submodule itself, as importorskip returns
    return pytest.importorskip(name, reason=f"{name} is not installed (pip install -e '.[all]')")


class Server:
    """A `portanet serve` subprocess: its port, its stderr lines, and how to stop it."""

    def __init__(self, model: Path, *args: str, ready_timeout: float = 60) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portanet",
                "serve",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
            start_new_session=True,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + ready_timeout
        self.port = 0
        while not self.port:
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(
                    f"server exited {self.process.returncode}: {''.join(self.lines)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server not up in {ready_timeout} s: {self.lines}")
            for line in list(self.lines):
                found = _BOUND.search(line)
                if found:
                    self.port = int(found.group(1))
            time.sleep(0.05)
        self.url = f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def infer(
        self, model: str, doc: dict | bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        status, _, payload = self.request(
            "POST",
            f"/v2/models/{model}/infer",
            body,
            {"Content-Type": "application/json", **(headers or {})},
        )
        return status, json.loads(payload) if payload else {}

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the /metrics exposition (0 when absent)."""
        _, _, text = self.request("GET", "/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.decode().splitlines():
            if line.startswith(name):
                head, _, value = line.rpartition(" ")
                found = head[len(name) :]
                parts = ",".join(sorted(found.strip("{}").split(","))) if found else ""
                if parts == want:
                    return float(value)
        return 0.0

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (drain) and wait for the exit status."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        finally:
            self.stop()
        self._reader.join(5)
        return status

    def stop(self) -> None:
        """Kill what is left of the server's process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def start_server() -> Iterator:
    """Factory: start_server(model, *cli_args) → a running :class:`Server` (stopped after)."""
    servers: list[Server] = []

    def start(model: Path, *args: str) -> Server:
        server = Server(model, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def pima_server() -> Iterator[Server]:
    """One batching Pima server shared by a test module."""
    server = Server(PIMA)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pima():
    import portanet

    return portanet.load(PIMA)


def pima_rows(count: int, seed: int = 0) -> np.ndarray:
    """Seeded float32 rows in the ranges of the Pima features."""
    rng = np.random.default_rng(seed)
    low = np.array([0, 40, 20, 0, 0, 15, 0.05, 21], dtype=np.float64)
    high = np.array([15, 200, 120, 60, 600, 60, 2.4, 80], dtype=np.float64)
    return (low + rng.random((count, 8)) * (high - low)).astype(np.float32)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small ONNX models built with the onnx package: `multi` (two inputs, three
    outputs), `image` (NHWC convolution net) and `fixed` (batch fixed at 2)."""
    onnx = need_module("onnx")
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(1)

    def save(graph, name: str) -> None:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, folder / f"{name}.onnx")

    w = numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w")
    multi = helper.make_graph(
        [
            helper.make_node("MatMul", ["a", "w"], ["mixed"]),
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["b_float"], ["b_sum"], keepdims=1),
            helper.make_node("Add", ["mixed", "b_sum"], ["scores"]),
            helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0),
            helper.make_node("Sigmoid", ["scores"], ["gate"]),
        ],
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("best", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("gate", TensorProto.FLOAT, ["batch", 4]),
        ],
        [w],
    )
    save(multi, "multi")

    k1 = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32) * 0.3, "k1")
    k2 = numpy_helper.from_array(rng.normal(size=(16, 8, 3, 3)).astype(np.float32) * 0.2, "k2")
    dense = numpy_helper.from_array(rng.normal(size=(16, 5)).astype(np.float32), "dense")
    image = helper.make_graph(
        [
            helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "k1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "k2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "dense"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["classes"], axis=1),
        ],
        "image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("classes", TensorProto.FLOAT, ["batch", 5])],
        [k1, k2, dense],
    )
    save(image, "image")

    fixed = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["squared"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("squared", TensorProto.FLOAT, [2, 4])],
    )
    save(fixed, "fixed")
    return folder
