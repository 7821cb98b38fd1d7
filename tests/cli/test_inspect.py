"""portanet.cli.inspect (``portanet inspect`` and ``portanet doctor``): a model's inputs,
outputs and metadata as a table or JSON; this machine's onnxruntime as lines or JSON."""

import json

import onnxruntime
from typer.testing import CliRunner

from portanet.cli import app
from tests.helpers import COMMITTED_ONNX

runner = CliRunner()


def test_inspect_shows_io_and_metadata():
    result = runner.invoke(app, ["inspect", str(COMMITTED_ONNX), "--json"])
    assert result.exit_code == 0
    assert '"feature_names"' in result.output and '"opset": 17' in result.output


def test_inspect_json_is_what_onnxruntime_reads_from_the_file():
    import hashlib

    result = runner.invoke(app, ["inspect", str(COMMITTED_ONNX), "--json"])
    info = json.loads(result.stdout)
    session = onnxruntime.InferenceSession(str(COMMITTED_ONNX), providers=["CPUExecutionProvider"])
    assert [t["name"] for t in info["inputs"]] == [i.name for i in session.get_inputs()]
    assert [t["name"] for t in info["outputs"]] == [o.name for o in session.get_outputs()]
    assert info["sha256"] == hashlib.sha256(COMMITTED_ONNX.read_bytes()).hexdigest()


def test_inspect_prints_a_table_and_the_recorded_labels():
    result = runner.invoke(app, ["inspect", str(COMMITTED_ONNX)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    session = onnxruntime.InferenceSession(str(COMMITTED_ONNX), providers=["CPUExecutionProvider"])
    for tensor in (*session.get_inputs(), *session.get_outputs()):
        assert tensor.name in text
    assert "opset: 17" in text and "labels: negative, positive" in text


def test_doctor_reports_the_installed_onnxruntime():
    result = runner.invoke(app, ["doctor", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (1 if report["problems"] else 0)
    assert onnxruntime.__version__ in json.dumps(report)
    assert "CPUExecutionProvider" in json.dumps(report)
