import json

from portanet.runtime.doctor import environment_report
from tests.helpers import run_cli


def test_report_names_the_runtime_and_its_providers():
    report = environment_report()
    assert "onnxruntime" in report["distributions"] or "onnxruntime-gpu" in report["distributions"]
    assert "CPUExecutionProvider" in report["available_providers"]
    assert report["usable_cpus"] >= 1
    assert report["export_side"]["tensorflow"] is True
    assert len(report["distributions"]) == 1 and report["problems"] == []


def test_doctor_cli_json():
    result = run_cli("doctor", "--json", timeout=60)
    assert result.returncode == 0
    assert json.loads(result.stdout)["onnxruntime"]
