"""Reaching a cluster: every kind of ``--address`` answers within seconds, ``ray://`` is refused
with the address to use, and options are checked before any cluster is started or reached.
Real subprocesses and real listeners; no Ray head needed."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.scale.conftest import MODEL, require_ray, run_portanet, write_inputs
from tests.scale.ray_head import free_port

require_ray()


def _ray(*args: str, timeout: float = 60):
    return run_portanet("infer", str(MODEL), *args, "--engine", "ray", timeout=timeout)


class _SilentListener:
    """A TCP listener that accepts connections and never answers (not a Ray head)."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.greeting:
                conn.sendall(self.greeting)
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_listener_that_is_not_ray_is_refused_within_seconds(tmp_path: Path):
    csv_path = write_inputs(tmp_path / "in", 10, 1)[0]
    for greeting in (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"):
        listener = _SilentListener(greeting)
        try:
            started = time.monotonic()
            done = _ray(
                str(csv_path),
                "--address",
                f"127.0.0.1:{listener.port}",
                "--output",
                str(tmp_path / "out"),
            )
            took = time.monotonic() - started
        finally:
            listener.close()
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not a Ray head's GCS" in lines[0], lines
        assert took < 15, took  # README: exit 2 in seconds (3 s deadline + start-up)
        assert not (tmp_path / "out").exists()


def test_ray_client_addresses_are_refused_with_the_address_to_use(tmp_path: Path):
    csv_path = write_inputs(tmp_path / "in", 10, 1)[0]
    done = _ray(
        str(csv_path), "--address", "ray://127.0.0.1:10001", "--output", str(tmp_path / "o")
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "ray:// is Ray Client" in line and "--address 127.0.0.1:6379" in line


def test_options_are_checked_before_any_cluster_is_reached(tmp_path: Path):
    """The address is closed: had the cluster been tried first, the message would say so."""
    csv_path = write_inputs(tmp_path / "in", 10, 1)[0]
    closed = f"127.0.0.1:{free_port()}"
    out = str(tmp_path / "out")
    for extra, message in [
        (["--keep-columns", "nosuch"], "expected the kept columns ['nosuch']"),
        (["--workers", "0"], "expected 1 <= min <= max"),
        (["--keep-columns", "id=ident"], "expected NAME without =NEW"),
    ]:
        started = time.monotonic()
        done = _ray(str(csv_path), "--address", closed, "--output", out, *extra)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "no Ray cluster" not in done.stderr, done.stderr
        assert time.monotonic() - started < 30
