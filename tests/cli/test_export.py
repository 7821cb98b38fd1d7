"""``portanet export`` in a real process: it says and records its own time and peak memory."""

import json

import onnx

from portanet import load
from portanet import schema as meta
from tests.helpers import run_cli


def test_export_prints_and_records_its_time_and_peak_memory(standin_mlp, tmp_path):
    target, report = tmp_path / "m.onnx", tmp_path / "r.json"
    done = run_cli(
        "export",
        str(standin_mlp),
        "--output",
        str(target),
        "--report",
        str(report),
        "--graph-cleanup",
        "onnxruntime",
        "--no-memory-check",
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "peak memory" in done.stdout.decode() and "GiB" in done.stdout.decode()
    run = json.loads(report.read_text())["export"]
    assert [s["stage"] for s in run["stages"]] == ["load", "convert", "check", "gate", "write"]
    assert run["peak_rss"] > 100 * 2**20 and run["memory_estimate"] is None
    recorded = load(target).metadata[meta.EXPORT_RUN]  # written during "write": up to the gate
    assert recorded["stages"] == run["stages"][:-1] and recorded["peak_rss"] <= run["peak_rss"]
    domains = {n.domain for n in onnx.load(str(target)).graph.node}
    assert domains <= {"", "ai.onnx"}
