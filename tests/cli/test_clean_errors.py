"""Issue 9 §3–§4 through real subprocesses: output paths checked before the work, `| head`, a
full disk, a deployment-only install, file modes under umask 022, and the CLI's own manners."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from portanet.reference.data import load_pima
from tests.helpers import COMMITTED_ONNX, REPO, run_cli


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """200,000 Pima rows as .npy: enough output to fill a pipe and a small file size limit."""
    path = tmp_path_factory.mktemp("rows") / "rows.npy"
    np.save(path, np.tile(load_pima().features, (261, 1))[:200_000])
    return path


def test_head_ends_quietly(rows):
    command = (
        f"{sys.executable} -m portanet infer {COMMITTED_ONNX} {rows} | head -2; "
        f'echo "status=${{PIPESTATUS[0]}}" >&2'
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, cwd=REPO, timeout=120)
    assert result.stdout.decode().splitlines()[0] == "probability,label"
    assert result.stderr.decode().strip() == "status=141"  # 128 + SIGPIPE, like any Unix tool


def test_a_full_disk_is_exit_2_with_the_path(rows, tmp_path):
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "portanet", "infer", str(COMMITTED_ONNX), str(rows)],
            stdout=full,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "error: <stdout>: expected room to write the predictions, got no space left on device"
    )

    def limit_file_size():  # a disk that fills after 100 kB, for this process only
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    target = tmp_path / "out.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "portanet",
            "infer",
            str(COMMITTED_ONNX),
            str(rows),
            "--output",
            str(target),
        ],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode().startswith(f"error: {target}: expected room to write")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


@pytest.mark.parametrize("case", ["same-file", "missing-folder", "unwritable"])
def test_output_paths_are_checked_before_the_work(rows, tmp_path, case):
    source = tmp_path / "in.npy"
    source.write_bytes(rows.read_bytes())
    target = {
        "same-file": source,
        "missing-folder": tmp_path / "new" / "out.csv",
        "unwritable": "/proc/portanet-out.csv",
    }[case]
    result = run_cli("infer", str(COMMITTED_ONNX), str(source), "--output", str(target))
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert {
        "same-file": "got the same file",
        "missing-folder": "does not exist",
        "unwritable": "expected a folder this process may write",
    }[case] in stderr
    assert source.read_bytes() == rows.read_bytes()
    if case == "missing-folder":
        made = run_cli(
            "infer", str(COMMITTED_ONNX), str(source), "--output", str(target), "--mkdir"
        )
        assert made.returncode == 0 and target.exists()


def test_export_in_a_deployment_only_install_names_the_extra(tmp_path):
    """TensorFlow made unimportable, as in `pip install portanet` without [export]."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import sys
        class _NoExport:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx",
                                              "h5py"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _NoExport())
    """)
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    (tmp_path / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    result = run_cli("export", str(tmp_path / "m.h5"), env=env)
    assert result.returncode == 2
    assert "pip install 'portanet[export]'" in result.stderr.decode()
    assert run_cli("infer", str(COMMITTED_ONNX), str(load_pima_path()), env=env).returncode == 0


def load_pima_path():
    from portanet.reference.data import pima_csv_path

    return pima_csv_path()


def test_written_files_respect_the_umask(tmp_path):
    """0644 under umask 022 (mkstemp alone gives 0600): an exported model and every output."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    commands = [["export", str(tmp_path / "m.keras"), "--report", str(tmp_path / "r.json")]]
    commands += [
        [
            "infer",
            str(tmp_path / "m.onnx"),
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / f"o{suffix}"),
        ]
        for suffix in (".csv", ".parquet", ".jsonl", ".npy")
    ]
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-m", "portanet", *args],
            capture_output=True,
            cwd=REPO,
            timeout=300,
            preexec_fn=lambda: os.umask(0o022),
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr.decode()
    written = sorted(
        p.name for p in tmp_path.iterdir() if p.suffix != ".keras" and p.name != "x.npy"
    )
    assert written == ["m.onnx", "o.csv", "o.jsonl", "o.npy", "o.parquet", "r.json"]
    for name in written:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_version_usage_and_debug_after_the_subcommand(tmp_path):
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.decode().startswith("portanet ")
    usage = run_cli("infer", "--help").stdout.decode()
    assert "Usage: portanet infer [OPTIONS] MODEL INPUT..." in usage
    bad = run_cli("infer", str(COMMITTED_ONNX), "x.csv", "--top-k", "zero")
    assert bad.returncode == 2 and bad.stderr.decode().startswith("error: ")
    assert len(bad.stderr.decode().strip().splitlines()) == 1
    debug = run_cli("infer", str(COMMITTED_ONNX), str(tmp_path / "none.csv"), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr.decode()


def test_long_lines_are_not_wrapped_in_a_pipe(tmp_path):
    long_name = tmp_path / ("a-rather-long-folder-name-" * 4) / "missing.csv"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-m", "portanet", "infer", str(COMMITTED_ONNX), str(long_name)],
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) > 120


def test_json_summary(tmp_path, rows):
    import json

    result = run_cli(
        "infer", str(COMMITTED_ONNX), str(rows), "--output", str(tmp_path / "o.npy"), "--json"
    )
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["rows"] == 200_000 and summary["output"] == str(tmp_path / "o.npy")
    assert summary["rows_per_second"] > 0 and summary["seconds"] > 0
