"""The library side of the Ray engine: ``predict_dataset`` inside a user's own Ray Data
pipeline, a local cluster started and stopped by portanet, and a local engine without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from tests.scale.conftest import (
    MODEL,
    REPO,
    local_predictions,
    read_folder,
    require_ray,
    run_portanet,
    sorted_by_id,
    write_inputs,
)

require_ray()

PIPELINE = """
import sys
import ray
from portanet.scale import Workers, predict_dataset

address, model, out, *files = sys.argv[1:]
ray.init(address=address, log_to_driver=False)
dataset = ray.data.read_parquet(files)  # the user's own reader, not portanet's
predictions = predict_dataset(dataset, model, keep_columns=["id"],
                              workers=Workers(1, 1, 0.5), rows_per_batch=5000)
predictions.write_parquet(out)
ray.shutdown()
"""


def test_predict_dataset_inside_a_users_pipeline(ray_head, tmp_path: Path):
    files = [p for p in write_inputs(tmp_path / "in", 30_000, 4) if p.suffix == ".parquet"]
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(PIPELINE))
    out = tmp_path / "predictions"
    done = subprocess.run(
        [sys.executable, str(script), ray_head.address, str(MODEL), str(out), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **ray_head.env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_folder(out)
    reference = local_predictions(files, tmp_path / "local")
    for name in ("id", "probability", "label"):
        np.testing.assert_array_equal(rows[name], reference[name])


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def test_without_address_a_local_cluster_is_started_and_stopped(tmp_path: Path):
    inputs = write_inputs(tmp_path / "in", 3_000, 2)  # one Parquet, one CSV
    jsonl = tmp_path / "in" / "more.jsonl"
    jsonl.write_text(
        '{"id": 5000, "pregnancies": 6, "glucose": 148, "blood_pressure": 72, '
        '"skin_thickness": 35, "insulin": 0, "bmi": 33.6, '
        '"diabetes_pedigree": 0.627, "age": 50}\n'
    )
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "predictions"
    env = {**os.environ, "HOME": str(home), "COLUMNS": "200"}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portanet",
            "infer",
            str(MODEL),
            str(tmp_path / "in"),
            "--engine",
            "ray",
            "--output",
            str(out),
            "--keep-columns",
            "id",
            "--format",
            "csv",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=300)
        deadline = time.monotonic() + 20
        while _session_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _session_pids(process.pid)
    finally:
        for pid in _session_pids(process.pid):
            os.kill(pid, 9)
    assert process.returncode == 0, stderr[-3000:]
    assert left == [], "Ray processes outlived the run"
    assert not (home / ".ray").exists()  # a private token, not ~/.ray/auth_token
    assert "wrote 3001 predictions from 3 files" in stderr
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = sorted_by_id(pa.concat_tables([pacsv.read_csv(p) for p in out.glob("*.csv")]))
    (tmp_path / "one").mkdir()
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    pq.write_table(pajson.read_json(jsonl), tmp_path / "one" / "more.parquet")
    reference = local_predictions([*inputs, tmp_path / "one" / "more.parquet"], tmp_path / "local")
    np.testing.assert_array_equal(rows["id"], reference["id"])
    np.testing.assert_allclose(rows["probability"], reference["probability"], rtol=1e-6)
    np.testing.assert_array_equal(rows["label"], reference["label"])


def test_the_local_engine_never_imports_ray(tmp_path: Path):
    csv_path = write_inputs(tmp_path, 100, 1)[0]
    code = textwrap.dedent(f"""
        import sys
        from portanet.cli import app
        try:
            app(["infer", {str(MODEL)!r}, {str(csv_path)!r}, "--output",
                 {str(tmp_path / "p.parquet")!r}], standalone_mode=False)
        finally:
            print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "p.parquet").exists()


def test_ray_engine_needs_an_output_folder(tmp_path: Path):
    csv_path = write_inputs(tmp_path, 10, 1)[0]
    done = run_portanet("infer", str(MODEL), str(csv_path), "--engine", "ray")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --engine ray writes a folder of files: expected --output FOLDER, got none"
    )
