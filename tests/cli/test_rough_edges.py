"""The rough edges a user hits in the first hour (issue 17 §5), through the real CLI in
subprocesses: closed pipes, Ctrl-C, a readable inspect, examples in --help, messages that name
the flag that fixes them, one rule for missing folders and missing models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import COMMITTED_ONNX, REPO, STANDIN_MLP, run_cli

CSV = REPO / "portanet" / "reference" / "pima-indians-diabetes.csv"
COMMANDS = ["train", "export", "verify", "infer", "inspect", "doctor", "optimize", "bench"]
COMMANDS += ["report", "serve"]


def _closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout a pipe whose reader has already gone (what ``| head`` leaves)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "portanet", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    finally:
        os.close(write)


@pytest.fixture(scope="module")
def image_onnx(tmp_path_factory) -> Path:
    """A tiny exported image model (16×16 grey pixels, Rescaling 1/255) and 3 PNG files."""
    from PIL import Image

    from portanet.export import export_model
    from portanet.export.keras.load import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("image")
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    path = export_model(model, folder / "img.onnx").path
    photos = folder / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{index}.png")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["doctor"],
        ["inspect", str(COMMITTED_ONNX)],
        ["inspect", str(COMMITTED_ONNX), "--json"],
        ["infer", str(COMMITTED_ONNX), str(CSV)],
        ["--help"],
        ["export", "--help"],
    ],
    ids=["doctor", "inspect", "inspect-json", "infer", "help", "export-help"],
)
def test_a_closed_pipe_is_exit_141(args):
    result = _closed_pipe(*args)
    assert result.returncode == 141, result.stderr.decode()[-500:]
    assert b"Traceback" not in result.stderr


def test_export_to_a_closed_pipe_is_exit_141(tmp_path):
    result = _closed_pipe("export", str(STANDIN_MLP), "--output", str(tmp_path / "m.onnx"))
    assert result.returncode == 141, result.stderr.decode()[-500:]


def ctrl_c_at_its_default() -> None:
    """Start a child as a terminal starts a foreground command, with Ctrl-C at its default: a
    test run started in the background by a non-interactive shell (``nohup … &``) ignores
    SIGINT, children inherit that, and Python then never installs its Ctrl-C handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_answered_within_a_second_even_inside_a_native_call(tmp_path):
    """The main thread sits in one long BLAS call, where Python's own handler cannot run."""
    script = tmp_path / "busy.py"
    script.write_text(
        "import numpy as np\n"
        "from portanet.cli.app import answer_interrupts\n"
        "answer_interrupts()\n"
        "a = np.ones((7000, 7000), np.float32)\n"  # one product: seconds inside BLAS
        "print('ready', flush=True)\n"
        "for _ in range(20):\n"
        "    a @ a\n"
    )
    with subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        preexec_fn=ctrl_c_at_its_default,
    ) as process:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        elapsed = time.monotonic() - started
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert process.returncode == 130 and elapsed < 1.5, (process.returncode, elapsed, stderr)
    assert b"interrupted" in stderr


def test_ctrl_c_during_export_ends_with_130_and_leaves_no_file(tmp_path):
    target = tmp_path / "m.onnx"
    with subprocess.Popen(
        [sys.executable, "-m", "portanet", "export", str(STANDIN_MLP), "--output", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        preexec_fn=ctrl_c_at_its_default,
    ) as process:
        # Inside the command: TensorFlow's libraries are loaded (its import or the conversion).
        maps = Path(f"/proc/{process.pid}/maps")
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if "libtensorflow" in maps.read_text(errors="replace"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        elapsed = time.monotonic() - started
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert process.returncode in (130, 0), stderr[-500:]  # 0: it had finished
    if process.returncode == 130:
        assert elapsed < 2.0, elapsed
        assert not target.exists() and not list(tmp_path.glob(".*tmp*"))


def test_inspect_prints_a_readable_summary_and_json_keeps_everything(exported):
    import json

    text = run_cli("inspect", str(exported.path))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert any(line.startswith("parity: passed (strict): max abs") for line in lines)
    assert any(line.startswith("source: pima_mlp.h5") for line in lines)
    assert all(len(line) <= 300 for line in lines) and "charts" not in text.stdout.decode()
    full = json.loads(run_cli("inspect", str(exported.path), "--json").stdout)
    assert "charts" in full["metadata"]["portanet.parity"]
    assert full["path"] == "pima_mlp.onnx"  # the file's name, not a path of this machine


def test_a_shared_report_names_the_model_file_not_a_path_of_this_machine(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(COMMITTED_ONNX.read_bytes())
    result = run_cli("report", str(model), "--output", str(tmp_path / "page.html"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "page.html").read_text()
    assert "model.onnx" in page and str(tmp_path) not in page


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_carries_an_example(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert f"Example: portanet {command}" in result.stdout.decode()


def test_export_and_infer_agree_on_missing_folders(tmp_path):
    nested = tmp_path / "new" / "deeper"
    refused = run_cli("export", str(STANDIN_MLP), "--output", str(nested / "m.onnx"))
    assert refused.returncode == 2 and "--mkdir" in refused.stderr.decode()
    assert not (tmp_path / "new").exists()
    made = run_cli("export", str(STANDIN_MLP), "--output", str(nested / "m.onnx"), "--mkdir")
    assert made.returncode == 0, made.stderr
    infer = run_cli("infer", str(COMMITTED_ONNX), str(CSV), "--output", str(tmp_path / "x/p.csv"))
    assert infer.returncode == 2 and "pass --mkdir to create it" in infer.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["infer", "{missing}", str(CSV)],
        ["inspect", "{missing}"],
        ["report", "{missing}"],
        ["bench", "{missing}"],
        ["export", "{missing_h5}"],
        ["verify", "{missing_h5}", str(COMMITTED_ONNX)],
    ],
    ids=["infer", "inspect", "report", "bench", "export", "verify"],
)
def test_a_missing_model_file_is_exit_3_everywhere(tmp_path, args):
    """The README: 3 — the model cannot be loaded; one line naming the file."""
    given = [
        a.format(missing=tmp_path / "none.onnx", missing_h5=tmp_path / "none.h5") for a in args
    ]
    result = run_cli(*given)
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert "no such file" in stderr and len(stderr.strip().splitlines()) == 1


def test_infer_images_into_npy_is_exit_2_with_a_message(image_onnx, tmp_path):
    result = run_cli(
        "infer",
        str(image_onnx),
        str(image_onnx.parent / "photos"),
        "--output",
        str(tmp_path / "x.npy"),
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert ".npy holds numbers only" in stderr and ".csv" in stderr
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize(
    "value, message",
    [("0..zz", "expected LOW..HIGH"), ("0..1e39", "float32 range"), ("-1e39..1", "float32")],
    ids=["typo", "overflow", "negative-overflow"],
)
def test_a_bad_image_range_in_infer_is_exit_2_naming_the_flag(image_onnx, value, message):
    result = run_cli(
        "infer", str(image_onnx), str(image_onnx.parent / "photos"), "--image-range", value
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.startswith("error: --image-range:") and message in stderr
