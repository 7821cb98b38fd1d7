"""Bounded load against a real server: every answer equals local predict, batching happens
(and changes no output), SIGTERM in the middle of load loses no accepted request, and several
worker processes share one port."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import time

import numpy as np
import pytest

import portanet
from tests.serve.conftest import PIMA, need_module, pima_rows

httpclient = need_module("tritonclient.http")


def _load(
    server, model: str, input_name: str, batches: list[np.ndarray], output: str, clients: int
) -> list[np.ndarray]:
    """Send every batch through the Triton client (its asyncio flavour), ``clients`` requests
    in flight at once, each client sending its next request when its answer is in."""
    aio = need_module("tritonclient.http.aio")
    answers: list[np.ndarray | None] = [None] * len(batches)

    async def main() -> None:
        client = aio.InferenceServerClient(server.url, conn_limit=clients)
        try:

            async def worker(start: int) -> None:
                for index in range(start, len(batches), clients):
                    batch = batches[index]
                    tensor = aio.InferInput(input_name, list(batch.shape), "FP32")
                    tensor.set_data_from_numpy(batch)
                    result = await client.infer(model, [tensor])
                    answers[index] = result.as_numpy(output)

            await asyncio.gather(*(worker(i) for i in range(clients)))
        finally:
            await client.close()

    asyncio.run(main())
    return answers  # type: ignore[return-value]


@pytest.mark.parametrize("batch_size", ["64", "1"], ids=["batching-on", "batching-off"])
def test_pima_under_load_equals_predict(start_server, pima, batch_size):
    server = start_server(PIMA, "--max-batch-size", batch_size)
    rng = np.random.default_rng(int(batch_size))
    total = 3000 if batch_size == "64" else 1000
    batches = [pima_rows(int(rng.integers(1, 4)), seed=i) for i in range(total)]
    answers = _load(server, "pima_mlp", "features", batches, "probability", clients=64)
    wrong = [
        i
        for i, (b, a) in enumerate(zip(batches, answers, strict=True))
        if not np.array_equal(a, pima.predict(b))
    ]
    assert wrong == []
    assert server.metric("portanet_requests_total", model="pima_mlp", code="200") == total
    assert server.metric("portanet_errors_total", model="pima_mlp", code="400") == 0
    runs = server.metric("portanet_batch_requests_count", model="pima_mlp")
    requests = server.metric("portanet_batch_requests_sum", model="pima_mlp")
    rows = server.metric("portanet_batch_rows_sum", model="pima_mlp")
    assert requests == total and rows == sum(len(b) for b in batches)
    if batch_size == "1":
        assert runs == total  # one run per request
    else:
        assert runs < total / 4, f"{runs} runs for {total} requests: no batching happened"
        assert server.metric("portanet_batch_rows_bucket", model="pima_mlp", le="1.0") < runs


@pytest.mark.parametrize("batch_size", ["16", "1"], ids=["batching-on", "batching-off"])
def test_image_model_batching_on_and_off_give_predict(start_server, model_dir, batch_size):
    server = start_server(model_dir / "image.onnx", "--max-batch-size", batch_size)
    model = portanet.load(model_dir / "image.onnx")
    rng = np.random.default_rng(11)
    batches = [rng.random((1, 16, 16, 3), dtype=np.float32) for _ in range(400)]
    answers = _load(server, "image", "pixels", batches, "classes", clients=16)
    assert all(np.array_equal(a, model.predict(b)) for b, a in zip(batches, answers, strict=True))
    runs = server.metric("portanet_batch_requests_count", model="image")
    assert runs == 400 if batch_size == "1" else runs < 200


def test_sigterm_during_load_loses_no_accepted_request(start_server, pima):
    server = start_server(PIMA, "--max-queue-delay-ms", "50")
    outcomes: list[tuple[int, np.ndarray, bytes]] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 60

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            _requests(index, conn)
        finally:
            conn.close()  # every return path: no socket left to the garbage collector

    def _requests(index: int, conn: http.client.HTTPConnection) -> None:
        for n in range(5000):  # bounded, and stopped by the first 503 or closed connection
            rows = pima_rows(1 + (index + n) % 3, seed=index * 10000 + n)
            body = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "shape": list(rows.shape),
                            "datatype": "FP32",
                            "data": rows.tolist(),
                        }
                    ]
                }
            )
            try:
                conn.request(
                    "POST", "/v2/models/pima_mlp/infer", body, {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                status, payload = response.status, response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                with lock:
                    failures.append(type(exc).__name__)
                return
            with lock:
                outcomes.append((status, rows, payload))
            if status != 200 or time.monotonic() > stop_at:
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    while len(outcomes) < 400 and time.monotonic() < stop_at:
        time.sleep(0.01)
    assert server.terminate() == 0  # drained, then exited 0
    for thread in threads:
        thread.join(60)
    log = "".join(server.lines)
    drain = re.search(r"SIGTERM: draining \((\d+) requests in flight\)", log)
    done = re.search(r"drained; (\d+) infer requests accepted, (\d+) answered; exiting", log)
    assert drain and done, log
    ok = [(rows, payload) for status, rows, payload in outcomes if status == 200]
    statuses = {status for status, _, _ in outcomes}
    assert statuses <= {200, 503}, statuses
    assert 503 in statuses  # new requests during the drain were refused, not dropped
    assert int(done.group(1)) == int(done.group(2)) == len(ok)  # every accepted one answered
    assert int(drain.group(1)) > 0  # and some were in flight when SIGTERM came
    for rows, payload in ok:
        data = json.loads(payload)["outputs"][0]["data"]
        assert np.array_equal(np.asarray(data, dtype=np.float32).reshape(-1, 1), pima.predict(rows))
    assert set(failures) <= {
        "RemoteDisconnected",
        "ConnectionResetError",
        "BrokenPipeError",
        "ConnectionRefusedError",
    }


def test_workers_share_the_port_and_drain(start_server, pima):
    server = start_server(PIMA, "--workers", "2")
    rows = [pima_rows(2, seed=i) for i in range(200)]
    answers = _load(server, "pima_mlp", "features", rows, "probability", clients=16)
    assert all(np.array_equal(a, pima.predict(r)) for r, a in zip(rows, answers, strict=True))
    assert server.metric("portanet_requests_total", model="pima_mlp", code="200") == 200
    assert server.terminate() == 0
    assert "2 workers exited with [0, 0]" in "".join(server.lines)
