"""``--workers 2``: a worker killed with SIGKILL is restarted, logged and counted, the server
keeps answering, and SIGTERM still drains every worker to a clean exit."""

from __future__ import annotations

import os
import re
import signal
import time

from tests.serve.conftest import PIMA
from tests.serve.test_errors import GOOD


def test_dead_worker_is_restarted_logged_and_counted(start_server):
    server = start_server(PIMA, "--workers", "2")
    deadline = time.monotonic() + 60
    pids: list[int] = []
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = [
            int(p) for p in re.findall(r"worker \d started \(pid (\d+)\)", "".join(server.lines))
        ]
        time.sleep(0.05)
    assert len(pids) == 2, server.lines
    os.kill(pids[0], signal.SIGKILL)
    while time.monotonic() < deadline:
        log = "".join(server.lines)
        if "restarting it" in log and log.count(" ready") == 3:
            break
        time.sleep(0.1)
    log = "".join(server.lines)
    assert f"worker 0 (pid {pids[0]}) died with exit status -9; restarting it" in log, log
    answered = 0
    while answered < 20 and time.monotonic() < deadline:
        answered += server.infer("pima_mlp", GOOD)[0] == 200
    assert answered == 20
    assert server.metric("portanet_worker_restarts_total") == 1
    assert server.terminate() == 0
    assert "2 workers exited with [0, 0]" in "".join(server.lines)
