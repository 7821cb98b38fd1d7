"""portanet bench on the digits CNN: ONNX and Keras timed in one run."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


def _check_rows(rows: list[dict], sizes: list[int]) -> None:
    assert [r["batch"] for r in rows] == sizes
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"], r
        assert r["calls"] >= 3
        # rows/s is the rate of a typical (p50) call; the total rate includes the pauses
        # of slow calls, so it is at most about that.
        assert r["rows_per_s"] == pytest.approx(r["batch"] / (r["p50_ms"] / 1e3), rel=1e-9)
        assert r["rows_per_s_total"] == pytest.approx(r["batch"] / (r["mean_ms"] / 1e3))
        assert r["rows_per_s_total"] <= 1.5 * r["rows_per_s"], r


def test_bench_json_has_every_batch_size_with_ordered_percentiles(digits, tmp_path):
    plot = tmp_path / "bench.png"
    result = run_cli(
        "bench",
        str(digits.onnx_path),
        "--source",
        str(digits.keras_path),
        "--batch-sizes",
        "1,8,256",
        "--seconds",
        "0.4",
        "--json",
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    _check_rows(data["onnx"], [1, 8, 256])
    _check_rows(data["keras"], [1, 8, 256])
    assert data["providers"] == ["CPUExecutionProvider"]
    for ratio, o, k in zip(data["ratios"], data["onnx"], data["keras"], strict=True):
        assert ratio["throughput"] == pytest.approx(o["rows_per_s"] / k["rows_per_s"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_bench_table_without_keras(digits):
    result = run_cli("bench", str(digits.onnx_path), "--batch-sizes", "4", "--seconds", "0.2")
    assert result.returncode == 0, result.stderr.decode()
    assert "p50 ms" in result.stdout.decode() and "Keras" not in result.stdout.decode()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--batch-sizes", "1,x"], "expected comma-separated positive integers"),
        (["--batch-sizes", "0"], "expected positive integers"),
        (["--seconds", "0"], "expected a positive duration"),
        (["--plot", "bench.txt"], "expected a .png, .svg or .pdf plot path"),
    ],
    ids=["not-a-number", "zero-batch", "zero-seconds", "plot-suffix"],
)
def test_bench_bad_options_exit_2(digits, tmp_path, args, expected):
    result = run_cli("bench", str(digits.onnx_path), "--seconds", "0.05", *args, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr.decode(), result.stderr
