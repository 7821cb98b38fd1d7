"""A real Ray head for the tests: ``ray start --head --block`` in its own session, on 127.0.0.1.

Everything is private to one head: a short temp dir (unix socket paths must stay under 107
bytes), free ports, 2 CPUs. It is stopped by process group and session id, never by
``ray stop`` (which would end every Ray process on the machine, other users' included).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Environment for the head and for every driver that connects to it: with it, Ray keeps
#: every listener on 127.0.0.1 instead of rewriting the node address to another interface.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_executable() -> str:
    found = Path(sys.executable).with_name("ray")
    if found.exists():
        return str(found)
    return shutil.which("ray") or "ray"


class RayHead:
    """A running head; :meth:`stop` ends it and every worker it started."""

    def __init__(self, num_cpus: int = 2, timeout: float = 90.0) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="pnr-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        #: The head's Ray Client server (``ray://`` addresses).
        self.client_address = f"ray://127.0.0.1:{free_port()}"
        self.log = self.temp_dir / "head.log"
        #: What a driver needs to reach this head: loopback only, and its private token (so
        #: that Ray writes no ~/.ray/auth_token).
        self.env = {
            **LOOPBACK_ENV,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        low = random.randrange(20000, 29000, 100)
        args = [
            _ray_executable(),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num-cpus",
            str(num_cpus),
            "--temp-dir",
            str(self.temp_dir),
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--node-manager-port",
            str(free_port()),
            "--object-manager-port",
            str(free_port()),
            "--ray-client-server-port",
            self.client_address.rsplit(":", 1)[1],
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--min-worker-port",
            str(low),
            "--max-worker-port",
            str(low + 99),
            "--object-store-memory",
            str(1 << 30),
        ]
        env = {**os.environ, **self.env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.sid = self.process.pid  # start_new_session: the session id is the leader's pid
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ray start --head exited with {self.process.returncode}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            if b"Ray runtime started" in self.log.read_bytes():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(
            f"the Ray head did not start within {timeout:.0f} s: "
            f"{self.log.read_text(errors='replace')[-2000:]}"
        )

    def session_pids(self) -> list[int]:
        """Processes of this head's session (the head, its daemons and its workers)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getsid(int(entry)) == self.sid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def worker_pids(self, marker: str) -> list[int]:
        """Session processes whose command line contains ``marker`` (e.g. ``MapWorker``)."""
        found = []
        for pid in self.session_pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(pid)
        return found

    def stop(self) -> None:
        """TERM the process group, then KILL it, then KILL whatever is left in the session."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for p in self.session_pids() if p != os.getpid()]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
