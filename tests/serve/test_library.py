"""`portanet.serve.create_app` as a library: an ASGI app that answers in-process (driven with
ASGI messages, as any ASGI server or a parent app would), and a server process that never
imports onnx or TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.serve.conftest import PIMA, REPO, pima_rows

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "h5py")

SCRIPT = f"""
import asyncio, json, sys
import numpy as np
import portanet
from portanet.serve import create_app

rows = np.asarray(json.loads(sys.argv[1]), dtype=np.float32)
app = create_app({str(PIMA)!r}, name="pima", max_batch_size=8)

async def call(method, path, body=b"", root_path=""):
    sent, messages = [], [{{"type": "http.request", "body": body, "more_body": False}}]
    async def receive():
        return messages.pop(0)
    async def send(message):
        sent.append(message)
    scope = {{"type": "http", "method": method, "path": root_path + path,
              "root_path": root_path, "headers": [(b"content-type", b"application/json")]}}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

async def main():
    body = json.dumps({{"inputs": [{{"name": "features", "shape": list(rows.shape),
                                    "datatype": "FP32", "data": rows.tolist()}}]}}).encode()
    answers = await asyncio.gather(*(call("POST", "/v2/models/pima/infer", body,
                                          root_path="/mounted") for _ in range(8)))
    status, metrics = await call("GET", "/metrics")
    await app.close()
    return answers, metrics.decode()

answers, metrics = asyncio.run(main())
print(json.dumps({{"answers": [[s, json.loads(b)] for s, b in answers], "metrics": metrics,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})}}))
"""


def test_create_app_answers_in_process_and_imports_no_export_side(pima):
    rows = pima_rows(3, seed=21)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(rows.tolist())],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    expected = pima.predict(rows)
    for status, doc in out["answers"]:
        assert status == 200 and doc["model_name"] == "pima"
        got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(3, 1)
        assert np.array_equal(got, expected)
    # eight concurrent requests of three rows, batches of at most eight rows: batching happened
    assert 'portanet_batch_requests_sum{model="pima"} 8.0' in out["metrics"]
    assert 'portanet_batch_rows_sum{model="pima"} 24.0' in out["metrics"]
    runs = float(out["metrics"].split('portanet_batch_requests_count{model="pima"} ')[1].split()[0])
    assert runs < 8


def test_cli_help_does_not_import_the_server():
    """Only the options dataclass (the flags' defaults, defined once) is imported."""
    code = (
        "import sys; from portanet.cli import app; import typer.testing as t; "
        "r = t.CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'serve' in r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('uvicorn', 'prometheus_client', 'orjson') or m.startswith('portanet.serve')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['portanet.serve', 'portanet.serve.options']"
