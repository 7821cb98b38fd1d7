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
from collections.abc import Callable
from pathlib import Path

import pytest

from portanet._files import atomic_path, write_bytes
from tests.helpers import COMMITTED_ONNX, REPO

TRIALS = 20
#: An export takes seconds (TensorFlow's import): fewer trials, spread over the same span.
EXPORT_TRIALS = 10


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _export_digest(path: Path) -> str | None:
    """The file's sha256 without the export's own run record (``portanet.export``: seconds and
    peak memory, which differ from run to run); a file onnx cannot parse keeps its raw sha256,
    so a torn one still matches neither outcome."""
    import onnx

    if not path.exists():
        return None
    try:
        proto = onnx.load_model_from_string(path.read_bytes())
    except Exception:  # a torn protobuf
        return _sha(path)
    kept = [p for p in proto.metadata_props if p.key != "portanet.export"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    return hashlib.sha256(proto.SerializeToString()).hexdigest()


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
    complete: str | None,
    duration: float,
    seed: int,
    trials: int = TRIALS,
    digest_of: Callable[[Path], str | None] = _sha,
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
        digest = digest_of(target)
        target_before = target.with_name("previous-" + target.name)
        target_before.write_bytes(previous)
        before = digest_of(target_before)
        target_before.unlink()
        if digest == before:
            seen["previous"] += 1
        elif digest == complete:
            seen["complete"] += 1
        else:
            pytest.fail(f"trial {trial}: destination is torn (sha256 {digest})")
    return seen


def _reference(
    argv: list[str], target: Path, digest_of: Callable[[Path], str | None] = _sha
) -> tuple[str | None, float]:
    started = time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return digest_of(target), time.perf_counter() - started


def test_sigkill_during_export(standin_mlp, tmp_path):
    target = tmp_path / "model.onnx"
    argv = [sys.executable, "-m", "portanet", "export", str(standin_mlp), "--output", str(target)]
    complete, duration = _reference(argv, target, _export_digest)
    seen = _kill_trials(
        argv,
        target,
        COMMITTED_ONNX.read_bytes(),
        complete,
        duration,
        seed=1,
        trials=EXPORT_TRIALS,
        digest_of=_export_digest,
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


# --- No command writes over one of its own inputs (one shared check: refuse_overwrite) ---


def test_refuse_overwrite_names_the_flag_and_the_input(tmp_path):
    from portanet._files import refuse_overwrite
    from portanet.errors import InputError

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    saved = tmp_path / "saved_model"
    saved.mkdir()
    with pytest.raises(InputError, match=r"--output .*m.onnx: .* input MODEL .*choose another"):
        refuse_overwrite({"--output": model}, {"MODEL": model})
    with pytest.raises(InputError, match="--report .* input MODEL"):
        refuse_overwrite({"--report": link}, {"MODEL": model})
    with pytest.raises(InputError, match="input SOURCE"):
        refuse_overwrite({"--output": saved / "saved_model.pb"}, {"SOURCE": saved})
    with pytest.raises(InputError, match="--report .* other than --output"):
        refuse_overwrite({"--output": tmp_path / "a.onnx", "--report": tmp_path / "a.onnx"}, {})
    refuse_overwrite({"--output": tmp_path / "other.onnx", "--report": None}, {"MODEL": model})
    refuse_overwrite({"--output": "-"}, {"SOURCE": "-"})


@pytest.fixture
def copied_onnx(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(COMMITTED_ONNX.read_bytes())
    return target


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "{m}", "--output", "{m}"],
        ["report", "{m}", "--bench", "{b}", "--output", "{b}"],
        ["optimize", "{m}", "--data", "{d}", "--report", "{m}"],
        ["optimize", "{m}", "--data", "{d}", "--output", "{d}"],
        ["bench", "{m}", "--plot", "{m}"],
        ["infer", "{m}", "{d}", "--output", "{d}"],
    ],
    ids=["report-output", "report-bench", "optimize-report", "optimize-data", "bench", "infer"],
)
def test_no_runtime_command_writes_over_its_input(copied_onnx, tmp_path, argv):
    from tests.helpers import run_cli

    data = tmp_path / "rows.csv"
    data.write_text("6,148,72,35,0,33.6,0.627,50\n1,85,66,29,0,26.6,0.351,31\n")
    bench = tmp_path / "bench.json"
    bench.write_text("{}")
    before = {p: p.read_bytes() for p in (copied_onnx, data, bench)}
    args = [a.format(m=copied_onnx, d=data, b=bench) for a in argv]
    result = run_cli(*args)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "expected a path other than the command's input" in stderr and "choose another" in stderr
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize(
    "flags",
    [["--output", "{s}"], ["--report", "{s}"], ["--data", "{d}", "--report", "{d}"]],
    ids=["output", "report", "report-over-data"],
)
def test_export_never_writes_over_its_source_or_data(standin_mlp, tmp_path, flags):
    from tests.helpers import run_cli

    data = tmp_path / "rows.csv"
    data.write_text("1,2,3,4,5,6,7,8\n")
    before = {p: p.read_bytes() for p in (standin_mlp, data)}
    args = [f.format(s=standin_mlp, d=data) for f in flags]
    result = run_cli("export", str(standin_mlp), *args)
    assert result.returncode == 2, result.stderr.decode()
    assert "choose another" in result.stderr.decode()
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]  # nothing written


def test_the_library_export_refuses_its_own_source(standin_mlp):
    from portanet.errors import InputError
    from portanet.export import export_model

    before = standin_mlp.read_bytes()
    with pytest.raises(InputError, match="input SOURCE"):
        export_model(standin_mlp, standin_mlp)
    assert standin_mlp.read_bytes() == before


def test_duplicate_feature_names_are_refused_at_export(standin_mlp, tmp_path):
    from portanet.errors import InputError
    from portanet.export import export_model
    from tests.helpers import run_cli

    names = "a,b,c,d,e,f,g,a"
    result = run_cli(
        "export", str(standin_mlp), "--output", str(tmp_path / "m.onnx"), "--feature-names", names
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "'a' at positions 1 and 8" in stderr and "--feature-names" in stderr
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(InputError, match="expected each name once"):
        export_model(standin_mlp, tmp_path / "m.onnx", feature_names=names.split(","))
