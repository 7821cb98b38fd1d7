"""Cold start of ``portanet infer`` under the installed typer against another typer release
(why pyproject pins ``typer<0.29``): both sides run the same command in fresh processes,
alternately, and the ratio of the medians is printed.

    pip install --target /tmp/typer029 typer==0.29.2        # the other release, outside the venv
    .venv/bin/python benchmarks/cold_start.py --other /tmp/typer029 --runs 15

The other release is put first on ``PYTHONPATH`` (with its own pydantic), so nothing in the
virtualenv changes. Target: the pinned typer starts at least 10% faster, else drop the pin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "pima_mlp.onnx"
ROW = (
    "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,diabetes_pedigree,age\n"
    "6,148,72,35,0,33.6,0.627,50\n"
)


def _typer_version(path: str) -> str:
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-c", "import typer; print(typer.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()


def _once(path: str, rows: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": path}
    command = [
        sys.executable,
        "-m",
        "portanet",
        "infer",
        str(MODEL),
        str(rows),
        "--output",
        str(out),
    ]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="a pip --target folder with typer")
    parser.add_argument("--runs", type=int, default=15, help="runs per side (alternating)")
    args = parser.parse_args()
    sides = {"installed": str(REPO), "other": os.pathsep.join([args.other, str(REPO)])}
    versions = {name: _typer_version(path) for name, path in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        rows, out = Path(tmp, "one.csv"), Path(tmp, "p.csv")
        rows.write_text(ROW)
        for path in sides.values():  # warm the file cache, untimed
            _once(path, rows, out)
        for _ in range(args.runs):
            for name, path in sides.items():
                times[name].append(_once(path, rows, out))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in sides:
        print(f"typer {versions[name]:>8} ({name}): median {medians[name] * 1000:7.1f} ms")
    ratio = medians["other"] / medians["installed"]
    print(
        f"ratio typer {versions['other']} / typer {versions['installed']}: {ratio:.2f}x "
        f"({args.runs} runs each; target for keeping the pin: >= 1.10)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
