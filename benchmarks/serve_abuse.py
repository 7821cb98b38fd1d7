"""Good requests under abuse: latency of 1-row Pima requests while the server is attacked.

One `portanet serve` process (Pima MLP). A good client sends 1-row JSON requests one after
another on a keep-alive connection; its p50/p99 are measured alone and during each attack:

* **gzip bomb**: 62 KB of gzip that inflates to ~64 MB of JSON values, sent again and again;
* **slow connections**: 2,000 connections that send half a request header and stop;
* **deep JSON**: bodies nested 2,000 deep, sent again and again.

The server's peak RSS is read from /proc during each phase. Then the server gets SIGTERM with
its stderr a closed pipe, and the time to exit is printed. Usage::

    python benchmarks/serve_abuse.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIMA = REPO / "models" / "pima_mlp.onnx"
GOOD = json.dumps(
    {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 8],
                "datatype": "FP32",
                "data": [6, 148, 72, 35, 0, 33.6, 0.627, 50],
            }
        ]
    }
).encode()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def good_client(port: int, stop: threading.Event, latencies: list[float], codes: list[int]):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            conn.request("POST", "/v2/models/pima_mlp/infer", GOOD, {"Content-Type": "x"})
            response = conn.getresponse()
            response.read()
            codes.append(response.status)
        except OSError:
            codes.append(0)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - start)
    conn.close()


def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v2/models/pima_mlp/infer", body, headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def phase(name: str, pid: int, port: int, seconds: float, attack) -> None:
    stop = threading.Event()
    latencies: list[float] = []
    codes: list[int] = []
    attackers = []
    if attack is not None:
        attackers = attack(stop)
    client = threading.Thread(target=good_client, args=(port, stop, latencies, codes))
    client.start()
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.05)
    stop.set()
    client.join()
    for thread in attackers:
        thread.join(30)
    ms = np.asarray(latencies) * 1000
    ok = sum(c == 200 for c in codes)
    print(
        f"| {name:<22} | {ok:>6} / {len(codes):<6} | {np.percentile(ms, 50):7.2f} | "
        f"{np.percentile(ms, 99):7.2f} | {peak:7.0f} |",
        flush=True,
    )


def repeat(port: int, body: bytes, headers: dict[str, str], threads: int = 2):
    def start(stop: threading.Event) -> list[threading.Thread]:
        def loop() -> None:
            while not stop.is_set():
                post(port, body, headers)

        out = [threading.Thread(target=loop) for _ in range(threads)]
        for thread in out:
            thread.start()
        return out

    return start


def slow_connections(port: int, count: int, held: list[socket.socket]):
    def start(stop: threading.Event) -> list[threading.Thread]:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v2/models/pima_mlp/infer HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        return []

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slow", type=int, default=2000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.slow + 500)), hard))
    process = subprocess.Popen(
        [sys.executable, "-m", "portanet", "serve", str(PIMA), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    held: list[socket.socket] = []
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        process.stderr.close()  # from here on the server's stderr is a closed pipe
        prefix = b'{"inputs": [{"name": "features", "shape": [4000000, 8], "datatype": "FP32", '
        bomb = gzip.compress(prefix + b'"data": [' + b"0," * 33_000_000 + b"0]}]}", 9)
        deep = (
            b'{"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": '
            + b"[" * 2000
            + b"1"
            + b"]" * 2000
            + b"}]}"
        )
        print(
            f"Pima MLP, 1 good client; {args.seconds:g} s per phase; gzip bomb {len(bomb):,} "
            f"bytes; load average {os.getloadavg()[0]:.1f}"
        )
        print("| phase                  | good 200 / sent | p50 ms  | p99 ms  | RSS MB  |")
        print("|------------------------|-----------------|---------|---------|---------|")
        phase("alone", process.pid, port, args.seconds, None)
        phase(
            "gzip bomb x2 threads",
            process.pid,
            port,
            args.seconds,
            repeat(port, bomb, {"Content-Encoding": "gzip"}),
        )
        phase(
            f"{args.slow} slow connections",
            process.pid,
            port,
            args.seconds,
            slow_connections(port, args.slow, held),
        )
        for sock in held:
            sock.close()
        phase("2,000-deep JSON x2", process.pid, port, args.seconds, repeat(port, deep, {}))
        began = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        status = process.wait(60)
        print(f"SIGTERM with stderr closed: exit {status} after {time.monotonic() - began:.2f} s")
    finally:
        for sock in held:
            sock.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


if __name__ == "__main__":
    main()
