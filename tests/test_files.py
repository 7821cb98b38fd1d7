"""Atomic writes: a run killed with SIGKILL at any moment leaves the previous file or the
complete new one at the destination, never a torn one."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portanet._files import atomic_path, write_bytes
from tests.helpers import COMMITTED_ONNX, REPO

TRIALS = 20
#: An export takes seconds (TensorFlow's import): fewer trials, spread over the same span.
EXPORT_TRIALS = 10


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".bin"
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]


def _kill_trials(
    argv: list[str],
    target: Path,
    previous: bytes,
    complete: str,
    duration: float,
    seed: int,
    trials: int = TRIALS,
) -> dict[str, int]:
    """Kill the command at delays spread from its start to past its measured duration (the last
    ones usually after it finished); the destination must always be whole."""
    rng = random.Random(seed)
    seen = {"previous": 0, "complete": 0}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for trial in range(trials):
        target.write_bytes(previous)
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO
        )
        spread = (trial + rng.random()) / trials  # 0 … 1, one trial per slice
        time.sleep(spread * duration * 1.6)
        process.send_signal(signal.SIGKILL)
        process.wait()
        digest = _sha(target)
        if digest == hashlib.sha256(previous).hexdigest():
            seen["previous"] += 1
        elif digest == complete:
            seen["complete"] += 1
        else:
            pytest.fail(f"trial {trial}: destination is torn (sha256 {digest})")
    return seen


def _reference(argv: list[str], target: Path) -> tuple[str, float]:
    started = time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return _sha(target), time.perf_counter() - started


def test_sigkill_during_export(standin_mlp, tmp_path):
    target = tmp_path / "model.onnx"
    argv = [sys.executable, "-m", "portanet", "export", str(standin_mlp), "--output", str(target)]
    complete, duration = _reference(argv, target)
    seen = _kill_trials(
        argv, target, COMMITTED_ONNX.read_bytes(), complete, duration, seed=1, trials=EXPORT_TRIALS
    )
    print(f"\nexport: {EXPORT_TRIALS} SIGKILL trials → {seen}")
    assert sum(seen.values()) == EXPORT_TRIALS
    assert seen["previous"] >= 1 and seen["complete"] >= 1, seen  # both outcomes were tried


def test_sigkill_during_infer_output(tmp_path):
    import numpy as np

    from portanet.reference.data import PIMA_FEATURES

    source = tmp_path / "rows.csv"
    rows = np.random.default_rng(3).uniform(0, 100, size=(200_000, 8)).round(2)
    with open(source, "w") as handle:
        handle.write(",".join(PIMA_FEATURES) + "\n")
        np.savetxt(handle, rows, fmt="%.2f", delimiter=",")
    target = tmp_path / "predictions.csv"
    argv = [
        sys.executable,
        "-m",
        "portanet",
        "infer",
        str(COMMITTED_ONNX),
        str(source),
        "--output",
        str(target),
        "--rows-per-batch",
        "8192",
    ]
    complete, duration = _reference(argv, target)
    seen = _kill_trials(argv, target, b"probability,label\n0.5,1\n", complete, duration, seed=2)
    print(f"\ninfer: {TRIALS} SIGKILL trials → {seen}")
    assert sum(seen.values()) == TRIALS
    assert seen["previous"] >= 1 and seen["complete"] >= 1, seen  # both outcomes were tried


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_0666_less_the_umask(tmp_path, mask, mode):
    """mkstemp alone gives 0600 whatever the umask: a server running as another user could not
    read an exported model."""
    import stat

    previous = os.umask(mask)
    try:
        write_bytes(tmp_path / "a.bin", b"x")
        with atomic_path(tmp_path / "b.bin") as temporary:
            temporary.write_bytes(b"y")
    finally:
        os.umask(previous)
    for name in ("a.bin", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
