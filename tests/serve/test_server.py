"""A real server process under abuse and at shutdown: a gzip bomb, slow connections, the
connection limit, the bounded drain (with a closed stderr too), the second signal, and start-up
errors as one portanet line with its exit code."""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.serve.conftest import PIMA, REPO, Server
from tests.serve.test_errors import GOOD

BODY = json.dumps(GOOD).encode()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _slow_body(
    server: Server, declared: int = 1000
) -> tuple[socket.socket, threading.Thread, dict]:
    """A request whose headers arrive but whose body never completes; its answer lands in
    the returned dict."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"POST /v2/models/pima_mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b"\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n" + BODY[:20]
    )
    answer: dict = {}

    def read() -> None:
        data = b""
        sock.settimeout(60)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
        answer["raw"] = data

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return sock, thread, answer


def _good_answers(server: Server, count: int) -> list[int]:
    return [server.infer("pima_mlp", GOOD)[0] for _ in range(count)]


def test_gzip_bomb_is_refused_without_stalling_or_bloating_the_server(start_server):
    server = start_server(PIMA)
    # 62 KB on the wire, ~64 MB of "0," inflated: more values than --max-elements allows
    prefix = (
        b'{"inputs": [{"name": "features", "shape": [4000000, 8], "datatype": "FP32", "data": ['
    )
    bomb = gzip.compress(prefix + b"0," * 33_000_000 + b"0]}]}", 9)
    assert len(bomb) < 100_000
    result: dict = {}

    def send_bomb() -> None:
        result["answer"] = server.infer("pima_mlp", bomb, {"Content-Encoding": "gzip"})

    thread = threading.Thread(target=send_bomb)
    thread.start()
    lives = []
    while thread.is_alive():
        lives.append(server.request("GET", "/v2/health/live")[0])
    thread.join()
    status, answer = result["answer"]
    assert status == 413 and "--max-elements" in answer["error"], answer
    assert lives and set(lives) == {200}
    assert _good_answers(server, 3) == [200, 200, 200]
    assert _rss_mb(server.process.pid) < 500


def test_declared_elements_checked_before_inflating(start_server):
    server = start_server(PIMA, "--max-elements", "1000")
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [200, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 200 * 8 * 4},
                }
            ]
        }
    ).encode()
    body = gzip.compress(header + bytes(200 * 8 * 4))
    status, answer = server.infer(
        "pima_mlp",
        body,
        {"Content-Encoding": "gzip", "Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 413 and "1,600 declared" in answer["error"], answer
    status, answer = server.infer("pima_mlp", b'{"inputs": [' + b"1," * 2000 + b"1]}")
    assert status == 413 and "--max-elements" in answer["error"], answer


def test_slow_connections_time_out_and_good_requests_are_answered(start_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = 2000
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"needs {count + 200} open files in the test process, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 200), hard))
    server = start_server(PIMA, "--read-timeout", "2")
    slow = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"POST /v2/models/pima_mlp/infer HTTP/1.1\r\nHost: x\r\n")  # no end
            slow.append(sock)
        assert _good_answers(server, 5) == [200] * 5
        time.sleep(3)
        sock = slow[0]
        sock.settimeout(10)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b"--read-timeout" in answer
        assert _good_answers(server, 5) == [200] * 5
    finally:
        for sock in slow:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connection_limit_answers_503(start_server):
    server = start_server(PIMA, "--max-connections", "4")
    held = [_slow_body(server) for _ in range(4)]
    status, _, _ = server.request("POST", "/v2/models/pima_mlp/infer", BODY)
    assert status == 503
    for sock, _, _ in held:
        sock.close()


def test_drain_cuts_late_requests_with_protocol_errors_within_the_timeout(start_server):
    server = start_server(PIMA, "--drain-timeout", "2", "--read-timeout", "60")
    sock, reader, answer = _slow_body(server)
    time.sleep(0.2)
    began = time.monotonic()
    assert server.terminate(timeout=10) == 0
    elapsed = time.monotonic() - began
    reader.join(10)
    raw = answer["raw"]
    assert raw.startswith(b"HTTP/1.1 503"), raw
    assert b"application/json" in raw and b"drain" in raw.split(b"\r\n\r\n", 1)[1], raw
    assert elapsed < 2 + 1.0, elapsed
    sock.close()


def test_sigterm_exits_when_stderr_is_a_closed_pipe():
    process = subprocess.Popen(
        [sys.executable, "-m", "portanet", "serve", str(PIMA), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # as `serve ... 2>&1 | head -1` reads it
        assert b"portanet serve: serving" in first
        process.stderr.close()
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(10)
        assert status == 0 and time.monotonic() - began < 3
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_second_signal_forces_exit(start_server):
    server = start_server(PIMA, "--drain-timeout", "60", "--read-timeout", "60")
    sock, _, _ = _slow_body(server)
    time.sleep(0.2)
    os.kill(server.process.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert server.process.poll() is None  # still draining the slow request
    began = time.monotonic()
    os.kill(server.process.pid, signal.SIGINT)
    assert server.process.wait(10) == 1 and time.monotonic() - began < 3
    sock.close()


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portanet", "serve", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_start_up_errors_are_one_line_with_their_exit_code(start_server, tmp_path):
    taken = start_server(PIMA)
    result = _serve(str(PIMA), "--port", str(taken.port))
    assert result.returncode == 2, result.stderr
    assert f"--port {taken.port}" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for args in (["--port", "70000"], ["--port", "65536"], ["--max-body-mb", "0"]):
        result = _serve(str(PIMA), *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
    result = _serve(str(PIMA), "--max-body-mb", "0")
    assert "--max-body-mb: expected a positive number, got 0" in result.stderr
    result = _serve(str(PIMA), "--grpc-port", "0", "--workers", "2")  # gRPC: one process
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--grpc-port: expected --workers 1 (gRPC is served by a single process)" in (
        result.stderr
    )
    missing = tmp_path / "missing.onnx"
    result = _serve(str(missing), "--workers", "2", "--port", "0", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 3, result.stderr
    assert not list(tmp_path.glob("portanet-metrics-*"))  # no folder left behind


def test_slow_body_gets_408_after_the_read_timeout(start_server):
    server = start_server(PIMA, "--read-timeout", "1")
    sock, reader, answer = _slow_body(server)
    reader.join(10)
    raw = answer["raw"]
    assert raw.startswith(b"HTTP/1.1 408"), raw
    assert b"within the read timeout (1 s between chunks)" in raw
    sock.close()
    assert _good_answers(server, 2) == [200, 200]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_malloc_tuning_applies_unless_the_operator_set_it():
    code = "from portanet.serve.server import tune_malloc; print(tune_malloc())"

    def run(**env: str) -> str:
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_MMAP", "MALLOC_TRIM"))
        }
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**clean, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert run() == "True"
    assert run(MALLOC_TRIM_THRESHOLD_="131072") == "False"
    assert run(MALLOC_MMAP_THRESHOLD_="131072") == "False"
