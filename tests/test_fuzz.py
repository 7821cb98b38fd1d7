"""Fuzzing: 200+ mutated .onnx and .h5 files must each end in a clean error or a correct load —
never a crash (signal), a hang or a traceback. Each file is loaded in a child process with a
timeout; a child that dies or hangs is replaced and the file counted."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import COMMITTED_H5, COMMITTED_ONNX, REPO, STANDIN_MLP

SEED = 20261128
PER_BASE = {"onnx": 110, "h5": 110}
TIMEOUT_S = 30.0


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation: bit flips, truncation, a spliced range, or a zeroed block."""
    kind = rng.choice(["flip", "flip", "truncate", "splice", "zero"])
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        buf = buf[: rng.randrange(len(buf))]
    elif kind == "splice":
        start, size = rng.randrange(len(buf)), rng.randint(1, 256)
        chunk = bytes(buf[rng.randrange(len(buf)) :][:size]) or os.urandom(size)
        buf[start : start + len(chunk)] = chunk if rng.random() < 0.5 else rng.randbytes(len(chunk))
    else:
        start = rng.randrange(len(buf))
        buf[start : start + rng.randint(1, 512)] = bytes(min(512, len(buf) - start))
    return kind, bytes(buf)


class Child:
    """A long-lived worker; replaced when it crashes or hangs."""

    def __init__(self, with_keras: bool) -> None:
        self.with_keras = with_keras
        self.start()

    def start(self) -> None:
        argv = [sys.executable, str(REPO / "tests" / "fuzz_worker.py")]
        if self.with_keras:
            argv.append("--with-keras")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        assert json.loads(self.process.stdout.readline())["ready"]

    def ask(self, path: Path) -> dict:
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT_S)
        if not ready:
            self.process.kill()
            self.process.wait()
            self._close_pipes()
            self.start()
            return {"outcome": "hang"}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self._close_pipes()
            self.start()
            return {"outcome": "crash", "signal": -code}
        return json.loads(line)

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):  # a dead child's stdin may refuse the flush
                stream.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait(timeout=30)
        self._close_pipes()


@pytest.mark.parametrize("kind", ["onnx", pytest.param("h5", marks=pytest.mark.slow)])
def test_mutated_files_never_crash_hang_or_traceback(tmp_path, kind):
    rng = random.Random(f"{SEED}-{kind}")
    bases = [COMMITTED_ONNX] if kind == "onnx" else [COMMITTED_H5, STANDIN_MLP]
    child = Child(with_keras=kind == "h5")
    outcomes: Counter[str] = Counter()
    bad: list[str] = []
    try:
        for index in range(PER_BASE[kind]):
            base = bases[index % len(bases)]
            how, data = mutate(base.read_bytes(), rng)
            path = tmp_path / f"m{index:03d}-{how}{base.suffix}"
            path.write_bytes(data)
            result = child.ask(path)
            outcomes[result["outcome"]] += 1
            if result["outcome"] not in ("ok", "error"):
                bad.append(f"{path.name}: {result}")
            path.unlink()
    finally:
        child.close()
    print(f"\n{kind}: {sum(outcomes.values())} files, outcomes {dict(outcomes)}")
    assert sum(outcomes.values()) == PER_BASE[kind]
    assert outcomes["error"] > 0, "no mutation was refused: the fuzzer is not biting"
    assert not bad, "\n".join(bad[:5])
