"""The HTTP layer alone: server CPU per request for a body size, glibc's malloc tuned or not.

uvicorn with `portanet serve`'s protocol (portanet.serve.http) and a trivial ASGI app that
reads the body with the server's own reader (portanet.serve.reading) and answers a few bytes —
no model — under the same closed-loop load generator as the other serve benchmarks
(serve_load.py), on keep-alive connections to 127.0.0.1. Each row runs a fresh server process;
the rows alternate ``--runs`` times, and the table gives ranges and the tuned/untuned ratio of
server CPU per request in each run. Usage::

    python benchmarks/serve_http.py [--body-bytes 602305] [--clients 16] [--seconds 5] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import free_port, span, wait_ready  # noqa: E402
from serve_images import cpu_seconds  # noqa: E402
from serve_load import http_request, run_load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SERVER = """
import socket, sys
import uvicorn
from portanet.serve.http import timed_protocol
from portanet.serve.reading import read_body
from portanet.serve.server import tune_malloc

CAP = 64 << 20

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, _, _ = await read_body(scope, receive, cap=CAP, timeout=10)
    out = b'{"bytes":%d}' % len(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})

if sys.argv[2] == "tuned":
    assert tune_malloc(), "mallopt refused"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=timed_protocol(10, CAP),
            loop="uvloop", lifespan="off", log_config=None, access_log=False)
"""


def _ok(index: int, status: int, body: bytes) -> bool:
    return status == 200 and body.startswith(b'{"bytes":')


def measure(mode: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_MMAP", "MALLOC_TRIM"))}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), mode],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        payload = [http_request("/any", body)]
        wait_ready(port, process)
        run_load("127.0.0.1", port, payload, _ok, clients=clients, seconds=1.0)
        before = cpu_seconds(process.pid)
        result = run_load("127.0.0.1", port, payload, _ok, clients=clients, seconds=seconds)
        used = cpu_seconds(process.pid) - before
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    summary = result.summary()
    summary["us_per_request"] = 1e6 * used / max(result.requests, 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body-bytes", type=int, default=602_305)  # a 224×224×3 FP32 request
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    body = b"7" * args.body_bytes
    rows: dict[str, list[dict[str, float]]] = {"malloc default": [], "malloc tuned": []}
    print(
        f"{args.body_bytes:,}-byte bodies, {args.clients} clients, {args.seconds:g} s x "
        f"{args.runs}, load average {os.getloadavg()[0]:.1f}"
    )
    for run in range(args.runs):
        order = list(rows) if run % 2 == 0 else list(rows)[::-1]
        for label in order:
            got = measure(label.split()[1], body, args.clients, args.seconds)
            rows[label].append(got)
            print(
                f"  run {run + 1} {label:<15} {got['req_s']:8.1f} req/s  p99 "
                f"{got['p99_ms']:6.1f} ms  {got['us_per_request']:6.1f} µs server CPU per "
                f"request  errors {got['errors']}",
                flush=True,
            )
    print()
    print("| malloc | req/s | p99 ms | server CPU µs per request |")
    print("|---|---:|---:|---:|")
    for label, results in rows.items():
        print(
            f"| {label.split()[1]} | {span([r['req_s'] for r in results], '.0f')} | "
            f"{span([r['p99_ms'] for r in results], '.1f')} | "
            f"{span([r['us_per_request'] for r in results], '.0f')} |"
        )
    ratios = [
        t["us_per_request"] / d["us_per_request"]
        for t, d in zip(rows["malloc tuned"], rows["malloc default"], strict=True)
    ]
    print("tuned / default CPU per request, per run: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
