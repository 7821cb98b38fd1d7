"""``portanet infer --engine ray`` against a real Ray head: same answers as the local engine on
every row, every row exactly once when a worker is killed, bad values, no cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tests.scale.conftest import (
    FEATURES,
    MODEL,
    REPO,
    features,
    local_predictions,
    read_folder,
    require_ray,
    run_portanet,
    write_inputs,
)
from tests.scale.ray_head import free_port

require_ray()


def _ray_infer(head, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_portanet(
        "infer",
        str(MODEL),
        *args,
        "--engine",
        "ray",
        "--address",
        head.address,
        env=head.env,
        timeout=timeout,
    )


def _assert_same(ray_rows: dict, local_rows: dict) -> None:
    assert len(ray_rows["id"]) == len(local_rows["id"])
    np.testing.assert_array_equal(ray_rows["id"], local_rows["id"])  # each id exactly once
    np.testing.assert_array_equal(ray_rows["probability"], local_rows["probability"])
    np.testing.assert_array_equal(ray_rows["label"], local_rows["label"])


def test_two_million_rows_match_the_local_engine(
    ray_head, big_inputs, big_reference, tmp_path: Path
):
    out = tmp_path / "predictions"
    done = _ray_infer(
        ray_head,
        *map(str, big_inputs),
        "--output",
        str(out),
        "--keep-columns",
        "id",
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote 2000000 predictions from {len(big_inputs)} files to {out}" in done.stderr
    assert (out / "_SUCCESS").exists()
    rows = read_folder(out)
    assert sorted(rows) == ["id", "label", "probability"]
    _assert_same(rows, big_reference)
    assert len(list(out.glob("*.parquet"))) >= 2  # written by the tasks, not gathered here


def test_a_killed_worker_is_replaced_and_every_row_is_written_once(
    ray_head, big_inputs, big_reference, tmp_path: Path
):
    out = tmp_path / "predictions"
    args = [
        sys.executable,
        "-m",
        "portanet",
        "infer",
        str(MODEL),
        str(big_inputs[0].parent),
        "--output",
        str(out),
        "--keep-columns",
        "id",
        "--engine",
        "ray",
        "--address",
        ray_head.address,
        "--workers",
        "2",
        "--rows-per-batch",
        "8192",
    ]
    before = set(ray_head.worker_pids("MapWorker"))
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **ray_head.env},
    )
    killed = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            busy = [p for p in ray_head.worker_pids("MapWorker") if p not in before]
            if busy:
                time.sleep(2.0)  # let it predict some batches first
                if process.poll() is None:
                    os.kill(busy[0], signal.SIGKILL)
                    killed = busy[0]
            time.sleep(0.1)
        running_after_kill = process.poll() is None
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert killed is not None, "no predictor actor process was seen to kill"
    assert running_after_kill, "the run ended before the worker was killed"
    assert process.returncode == 0, stderr[-3000:]
    _assert_same(read_folder(out), big_reference)


def _bad_inputs(folder: Path) -> tuple[Path, Path]:
    """A CSV whose line 40 has text in ``glucose`` and line 90 an empty ``bmi``, and a Parquet
    file whose row index 6 has NaN in ``age``; 200 rows each, ids 0-199 and 1000-1199."""
    folder.mkdir()
    values = features(200, seed=3)
    csv_columns = {"id": np.arange(200)}
    csv_columns.update({n: values[:, j].astype(str).astype(object) for j, n in enumerate(FEATURES)})
    csv_columns["glucose"][38] = "high"  # data row 39 = line 40 (after the header)
    csv_columns["bmi"][88] = ""  # line 90
    csv_path = folder / "visits.csv"
    pacsv.write_csv(pa.table(csv_columns), csv_path)
    parquet_values = features(200, seed=4)
    parquet_values[6, FEATURES.index("age")] = np.nan  # row index 6
    pq_columns = {"id": np.arange(1000, 1200)}
    pq_columns.update({n: parquet_values[:, j] for j, n in enumerate(FEATURES)})
    parquet_path = folder / "clinic.parquet"
    pq.write_table(pa.table(pq_columns), parquet_path)
    return csv_path, parquet_path


def test_a_bad_value_fails_naming_file_and_line_and_leaves_no_output(ray_head, tmp_path: Path):
    csv_path, parquet_path = _bad_inputs(tmp_path / "in")
    out = tmp_path / "predictions"
    done = _ray_infer(ray_head, str(csv_path), "--output", str(out), "--keep-columns", "id")
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {csv_path}: line 40, column 'glucose': expected a number, got "
        f"'high'; nothing was written"
    ]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no staging folder left

    done = _ray_infer(ray_head, str(parquet_path), "--output", str(out))
    assert done.returncode == 2
    assert (
        f"error: {parquet_path}: row 6, column 'age': expected a finite number, got NaN"
        in done.stderr
    )
    assert not out.exists()


def test_skip_writes_bad_rows_aside_and_predicts_the_rest(ray_head, tmp_path: Path):
    csv_path, parquet_path = _bad_inputs(tmp_path / "in")
    out = tmp_path / "predictions"
    done = _ray_infer(
        ray_head,
        str(tmp_path / "in"),
        "--output",
        str(out),
        "--keep-columns",
        "id",
        "--on-error",
        "skip",
        "--format",
        "parquet",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rejected_dir = tmp_path / "predictions.rejected"
    assert f"wrote 397 predictions from 2 files to {out}" in done.stderr
    assert (
        f"skipped 3 rows with bad values: written with their reasons to {rejected_dir}"
        in done.stderr
    )
    import pyarrow.dataset as pads

    rejected = pads.dataset(str(rejected_dir), format="parquet").to_table().sort_by("id")
    assert rejected.column("id").to_pylist() == [38, 88, 1006]
    assert rejected.column("file").to_pylist() == [str(csv_path), str(csv_path), str(parquet_path)]
    # CSV lines (from 1), a Parquet row index (from 0): the local engine's columns
    assert rejected.column("unit").to_pylist() == ["line", "line", "row"]
    assert rejected.column("number").to_pylist() == [40, 90, 6]
    assert rejected.column("reason").to_pylist() == [
        "column 'glucose': expected a number, got 'high'",
        # the local engine's reasons, word for word (one value policy)
        "column 'bmi': expected a finite number, got an empty value "
        "(allow_nan passes NaN/Inf through)",
        "column 'age': expected a finite number, got NaN (allow_nan passes NaN/Inf through)",
    ]
    rows = read_folder(out)
    good = sorted(set(range(200)) - {38, 88}) + sorted(set(range(1000, 1200)) - {1006})
    assert rows["id"].tolist() == good
    # The good rows get exactly the local engine's answers (local run on the clean rows).
    clean = tmp_path / "clean"
    clean.mkdir()
    table = pacsv.read_csv(
        csv_path,
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in FEATURES}),
    )
    keep = [i for i in range(200) if i not in (38, 88)]
    table = table.take(keep)
    table = pa.table(
        {"id": table.column("id"), **{n: table.column(n).cast(pa.float32()) for n in FEATURES}}
    )
    pq.write_table(table, clean / "visits.parquet")
    pq.write_table(
        pq.read_table(parquet_path).filter(
            pa.compute.not_equal(pq.read_table(parquet_path).column("id"), 1006)
        ),
        clean / "clinic.parquet",
    )
    reference = local_predictions(sorted(clean.glob("*.parquet")), tmp_path / "local")
    np.testing.assert_array_equal(rows["id"], reference["id"])
    np.testing.assert_array_equal(rows["probability"], reference["probability"])
    np.testing.assert_array_equal(rows["label"], reference["label"])


def test_no_cluster_at_the_address_is_one_line_and_exit_2(tmp_path: Path):
    address = f"127.0.0.1:{free_port()}"
    csv_path = write_inputs(tmp_path / "in", 10, 1)[0]
    started = time.monotonic()
    done = run_portanet(
        "infer",
        str(MODEL),
        str(csv_path),
        "--engine",
        "ray",
        "--address",
        address,
        "--output",
        str(tmp_path / "out"),
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: no Ray cluster at {address}: expected a Ray head listening there,"
        f" got Connection refused"
    ]
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists()


def test_jsonl_in_and_out_under_the_local_engines_value_policy(ray_head, tmp_path: Path):
    """Issue 20/21: a wrong-typed JSONL value costs its row (not the file) with --on-error skip,
    a CSV 1e39 is refused even with --allow-nan — the reasons word for word the local
    engine's; --format jsonl writes .jsonl files; the only lines on stderr are portanet's."""
    data = tmp_path / "in"
    data.mkdir()
    values = features(30, seed=3)
    lines = []
    for i, row in enumerate(values):
        record = {"id": i, **{n: float(v) for n, v in zip(FEATURES, row, strict=True)}}
        if i == 4:
            record["glucose"] = "high"
        lines.append(json.dumps(record))
    (data / "a.jsonl").write_text("\n".join(lines) + "\n")
    cells = [[str(v) for v in row] for row in features(5, seed=4)]
    cells[2][FEATURES.index("age")] = "1e39"
    (data / "b.csv").write_text(
        ",".join(["id", *FEATURES])
        + "\n"
        + "".join(f"{100 + i}," + ",".join(c) + "\n" for i, c in enumerate(cells))
    )
    out = tmp_path / "out"
    common = ("--keep-columns", "id", "--allow-nan", "--output")
    done = _ray_infer(
        ray_head, str(data), *common, str(out), "--on-error", "skip", "--format", "jsonl"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        done.stderr.strip().splitlines()[0],
        f"skipped 2 rows with bad values: written with their reasons to {out}.rejected",
    ]
    assert done.stderr.startswith("wrote 33 predictions from 2 files to ")
    written = sorted(p.name for p in out.iterdir())
    assert "_SUCCESS" in written and all(n.endswith(".jsonl") for n in written if n != "_SUCCESS")
    ids = sorted(
        json.loads(line)["id"] for p in out.glob("*.jsonl") for line in p.read_text().splitlines()
    )
    assert ids == sorted(set(range(30)) - {4} | set(range(100, 105)) - {102})
    import pyarrow.dataset as pads

    rejected = pads.dataset(f"{out}.rejected", format="parquet").to_table().sort_by("id")
    reasons = rejected.column("reason").to_pylist()
    # the local engine, same files, same options
    local = run_portanet(
        "infer",
        str(MODEL),
        str(data),
        *common,
        str(tmp_path / "local.csv"),
        "--on-error",
        "skip",
    )
    assert local.returncode == 0, local.stderr
    listed = pacsv.read_csv(tmp_path / "local.rejected.csv").to_pydict()
    assert sorted(listed["reason"]) == sorted(reasons)
    # the same rows, named the same way: file, unit and number agree with the local listing
    local_rows = sorted(zip(listed["file"], listed["unit"], listed["number"], strict=True))
    ray_rows = sorted(
        zip(
            rejected.column("file").to_pylist(),
            rejected.column("unit").to_pylist(),
            rejected.column("number").to_pylist(),
            strict=True,
        )
    )
    assert ray_rows == local_rows
    assert any("column 'glucose': expected a number, got \"high\"" in r for r in reasons)
    assert any("got 1e+39, outside float32 range" in r for r in reasons)
    refused = _ray_infer(ray_head, str(data / "b.csv"), *common, str(tmp_path / "refused"))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {data / 'b.csv'}: line 4, column 'age': expected a number, got 1e+39, "
        "outside float32 range; nothing was written"
    ]


def test_ray_client_address_gives_the_local_engines_answers(ray_head, tmp_path: Path):
    """--address ray://HOST:PORT (Ray Client, through the head's real client server): one task
    per file, the local engine's predictions for every row; a bad value still fails naming
    file and line, with nothing written."""
    paths = write_inputs(tmp_path / "in", 3_000, 3, seed=5)
    reference = local_predictions(paths, tmp_path / "local")
    out = tmp_path / "out"
    done = run_portanet(
        "infer",
        str(MODEL),
        str(tmp_path / "in"),
        "--engine",
        "ray",
        "--address",
        ray_head.client_address,
        "--keep-columns",
        "id",
        "--output",
        str(out),
        env=ray_head.env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]
    assert done.stderr.startswith(f"wrote 3000 predictions from 3 files to {out}")
    _assert_same(read_folder(out), reference)
    csv_path, _ = _bad_inputs(tmp_path / "bad")
    failed = run_portanet(
        "infer",
        str(MODEL),
        str(csv_path),
        "--engine",
        "ray",
        "--address",
        ray_head.client_address,
        "--output",
        str(tmp_path / "failed"),
        env=ray_head.env,
        timeout=300,
    )
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert failed.stderr.strip().splitlines() == [
        f"error: {csv_path}: line 40, column 'glucose': expected a number, got 'high'; "
        "nothing was written"
    ]
    assert not (tmp_path / "failed").exists()


def test_sigterm_and_sigint_exit_cleanly_with_one_line(ray_head, big_inputs, tmp_path: Path):
    """No native stack dump, no partial output, the conventional exit codes."""
    env = {**os.environ, **ray_head.env, "COLUMNS": "200"}
    codes = []
    # 1 s: during start-up (the CLI, importing Ray, connecting); a whole 2M-row run takes
    # about 2 s on a quiet machine, so a later signal could come after the run.
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGTERM, None), (signal.SIGINT, None)):
        out = tmp_path / f"out-{sig.name}-{wait or 'writing'}"
        process = subprocess.Popen(
            [sys.executable, "-m", "portanet", "infer", str(MODEL)]
            + [str(p) for p in big_inputs]
            + ["--engine", "ray", "--address", ray_head.address, "--output", str(out)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if wait is not None:
            time.sleep(wait)
        else:  # inside the Ray session: the write has created its staging folder
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob(f".{out.name}.partial-*")):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
        if process.returncode == -sig:  # ended by the signal before any Ray work: silent
            assert stderr == "", stderr
        else:
            assert process.returncode == 128 + sig, (sig, wait, process.returncode, stderr)
            assert stderr.strip().splitlines() == [
                f"error: stopped by {sig.name}; nothing was written"
            ], stderr
        assert not out.exists()
        assert not list(tmp_path.glob(f".{out.name}.partial-*"))
        codes.append(process.returncode)
    assert codes[1:] == [143, 130]  # signalled while writing: inside the Ray session
