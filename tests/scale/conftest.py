"""Fixtures for the Ray engine tests: one real Ray head per session, real files, and the local
engine's answers (``portanet infer`` without Ray) to compare against."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from portanet.reference.data import PIMA_FEATURES
from tests.scale.ray_head import RayHead

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "pima_mlp.onnx"
FEATURES = list(PIMA_FEATURES)
LOW = np.array([0, 40, 20, 0, 0, 15, 0.05, 21.0])
HIGH = np.array([15, 200, 120, 60, 600, 60, 2.5, 80.0])


def _ray_available() -> bool:
    # Found, not imported: Ray reads its environment (loopback, auth token) when first imported,
    # so the test process itself never imports it; drivers run in subprocesses.
    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    """Skip the calling test module without Ray (fail instead when ``PORTANET_CI=1``)."""
    if _ray_available():
        return
    if os.environ.get("PORTANET_CI") == "1":
        raise RuntimeError("the Ray engine tests need ray[data]: pip install -e '.[ray]'")
    pytest.skip("ray[data] is not installed (pip install -e '.[ray]')", allow_module_level=True)


def run_portanet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m portanet ARGS`` in a real subprocess (text output)."""
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "portanet", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full,
        timeout=timeout,
    )


def features(rows: int, seed: int) -> np.ndarray:
    """Pima-shaped random rows (float32) inside the bundled data's ranges."""
    rng = np.random.default_rng(seed)
    return (LOW + rng.random((rows, len(FEATURES))) * (HIGH - LOW)).astype(np.float32)


def write_inputs(folder: Path, rows: int, parts: int, seed: int = 0) -> list[Path]:
    """``rows`` rows with a unique ``id`` split over ``parts`` files, Parquet and CSV in turn
    (CSV columns in another order, with an extra ``outcome`` column)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    values = features(rows, seed)
    cuts = np.linspace(0, rows, parts + 1, dtype=np.int64)
    paths = []
    for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        columns = {"id": np.arange(start, stop, dtype=np.int64)}
        columns.update({name: values[start:stop, j] for j, name in enumerate(FEATURES)})
        if index % 2 == 0:
            path = folder / f"part-{index}.parquet"
            pq.write_table(pa.table(columns), path, row_group_size=100_000 + 7 * index)
        else:
            path = folder / f"part-{index}.csv"
            order = ["outcome"] + FEATURES[::-1] + ["id"]
            columns["outcome"] = np.zeros(stop - start, dtype=np.int64)
            pacsv.write_csv(pa.table({k: columns[k] for k in order}), path)
        paths.append(path)
    return paths


def local_predictions(paths: list[Path], out: Path) -> dict[str, np.ndarray]:
    """The local engine's output for every file (``portanet infer`` per file), sorted by id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for path in paths:
        target = out / f"{path.stem}.parquet"
        done = run_portanet(
            "infer", str(MODEL), str(path), "--output", str(target), "--keep-columns", "id"
        )
        assert done.returncode == 0, done.stderr
        tables.append(pq.read_table(target))
    return sorted_by_id(pa.concat_tables(tables))


def read_folder(folder: Path) -> dict[str, np.ndarray]:
    """Every Parquet file of an output folder, sorted by id."""
    import pyarrow.dataset as pads

    return sorted_by_id(pads.dataset(str(folder), format="parquet").to_table())


def sorted_by_id(table) -> dict[str, np.ndarray]:
    order = np.argsort(table.column("id").to_numpy(), kind="stable")
    return {name: table.column(name).to_numpy()[order] for name in table.column_names}


@pytest.fixture(scope="session")
def ray_head():
    """A real head (``ray start --head``, 2 CPUs, 127.0.0.1), stopped even when tests fail."""
    head = RayHead(num_cpus=2)
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def big_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """2,000,000 rows in 3 Parquet and 3 CSV files."""
    return write_inputs(tmp_path_factory.mktemp("big"), 2_000_000, 6)


@pytest.fixture(scope="session")
def big_reference(big_inputs, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The local engine's predictions for ``big_inputs``."""
    return local_predictions(big_inputs, tmp_path_factory.mktemp("local"))
