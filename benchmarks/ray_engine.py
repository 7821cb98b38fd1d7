"""The Ray engine against the local engine, whole processes timed, both on this machine in the
same run (alternately), and the per-core figures behind the README's scaling plan.

    .venv/bin/python benchmarks/ray_engine.py                 # 8M rows, 3 runs (~3 minutes)
    .venv/bin/python benchmarks/ray_engine.py --rows 1000000 --runs 1

Local: ``portanet infer MODEL all.parquet --output p.parquet`` (the rows in one file).
Ray: ``portanet infer MODEL folder/ --engine ray --address HEAD --output dir/`` over the same
rows in --files Parquet files, against a real head started here (``ray start --head``, 2 CPUs,
127.0.0.1). Fixed overhead: the same Ray command on a 1,000-row file. Needs ``.[ray]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "pima_mlp.onnx"
sys.path.insert(0, str(REPO))

from tests.scale.conftest import FEATURES, features  # noqa: E402
from tests.scale.ray_head import RayHead  # noqa: E402


def make_inputs(folder: Path, rows: int, files: int) -> tuple[Path, Path, Path]:
    """The rows in ``files`` Parquet files, the same rows in one file, and a 1,000-row file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = features(rows, seed=0)
    parts = folder / "parts"
    parts.mkdir(parents=True)
    cuts = np.linspace(0, rows, files + 1, dtype=np.int64)
    for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
        pq.write_table(
            pa.table({n: values[start:stop, j] for j, n in enumerate(FEATURES)}),
            parts / f"part-{index}.parquet",
        )
    whole = folder / "all.parquet"
    pq.write_table(pa.table({n: values[:, j] for j, n in enumerate(FEATURES)}), whole)
    small = folder / "small" / "rows.parquet"
    small.parent.mkdir()
    pq.write_table(pa.table({n: values[:1000, j] for j, n in enumerate(FEATURES)}), small)
    return parts, whole, small.parent


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds for one whole ``python -m portanet`` process (which must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "portanet", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"portanet {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def per_core(whole: Path, rows: int) -> dict[str, float]:
    """Rows/s on one thread: predicting ready batches, and reading + converting Parquet."""
    import pyarrow as pa

    from portanet.scale.predictor import Predictor
    from portanet.scale.sources import list_inputs, read_file
    from portanet.tables.options import RAY_ROWS_PER_BATCH
    from portanet.tables.types import Columns

    columns = Columns(tuple(FEATURES), 8, (), np.dtype(np.float32))
    source = list_inputs([str(whole)])[0]
    start = time.perf_counter()
    blocks = list(read_file(0, source, columns, RAY_ROWS_PER_BATCH))
    read_s = time.perf_counter() - start
    predictor = Predictor(MODEL.read_bytes(), threads=1, files=[(str(whole), "row")])
    predictor(blocks[0])
    start = time.perf_counter()
    for block in blocks:
        predictor(block)
    predict_s = time.perf_counter() - start
    table = pa.concat_tables(blocks)
    return {
        "read_rows_per_s": rows / read_s,
        "predict_rows_per_s": rows / predict_s,
        "bytes_per_row_parquet": whole.stat().st_size / rows,
        "arrow_bytes_per_row": table.nbytes / rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pnr-bench-"))
    head = None
    try:
        parts, whole, small = make_inputs(root, options.rows, options.files)
        head = RayHead(num_cpus=2)
        ray_args = ["--engine", "ray", "--address", head.address]
        results = []
        for run in range(options.runs):
            shutil.rmtree(root / "out", ignore_errors=True)
            local_s = timed(
                ["infer", str(MODEL), str(whole), "--output", str(root / "local.parquet")]
            )
            ray_s = timed(
                ["infer", str(MODEL), str(parts), "--output", str(root / "out"), *ray_args],
                head.env,
            )
            shutil.rmtree(root / "small-out", ignore_errors=True)
            fixed_s = timed(
                ["infer", str(MODEL), str(small), "--output", str(root / "small-out"), *ray_args],
                head.env,
            )
            results.append((local_s, ray_s, fixed_s))
            print(
                f"run {run + 1}: local {local_s:.2f} s ({options.rows / local_s:,.0f} rows/s)"
                f" | ray {ray_s:.2f} s ({options.rows / ray_s:,.0f} rows/s) | ray on 1,000 "
                f"rows {fixed_s:.2f} s | ratio {local_s / ray_s:.2f}x | ray less its fixed "
                f"overhead {options.rows / max(ray_s - fixed_s, 1e-9):,.0f} rows/s",
                flush=True,
            )
        ratios = [local / ray for local, ray, _ in results]
        fixed = [f for _, _, f in results]
        print(
            f"Ray rows/s vs local rows/s over {options.runs} runs: "
            f"{min(ratios):.2f}-{max(ratios):.2f}x (target >= 0.3x); fixed overhead "
            f"{min(fixed):.1f}-{max(fixed):.1f} s"
        )
        core = per_core(whole, options.rows)
        print(
            f"per core: read+convert Parquet {core['read_rows_per_s']:,.0f} rows/s, predict "
            f"{core['predict_rows_per_s']:,.0f} rows/s; {core['bytes_per_row_parquet']:.1f} "
            f"bytes/row on disk, {core['arrow_bytes_per_row']:.1f} bytes/row in Arrow"
        )
    finally:
        if head is not None:
            head.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
