import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from portanet.cli import app
from portanet.reference.data import pima_csv_path
from tests.helpers import COMMITTED_ONNX, run_cli

runner = CliRunner()
PIMA_HEADER = "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,diabetes_pedigree,age"


def test_infer_writes_probability_and_label(tmp_path):
    target = tmp_path / "pred.csv"
    result = runner.invoke(
        app, ["infer", str(COMMITTED_ONNX), str(pima_csv_path()), "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    lines = target.read_text().splitlines()
    assert lines[0] == "probability,label" and len(lines) == 769
    probability, label = next(csv.reader(lines[1:2]))
    assert 0 <= float(probability) <= 1
    assert label == ("negative", "positive")[int(float(probability) >= 0.5)]


def test_infer_matches_the_library(tmp_path):
    import portanet
    from portanet.reference.data import load_pima

    np.save(tmp_path / "x.npy", load_pima().features[:50])
    result = runner.invoke(app, ["infer", str(COMMITTED_ONNX), str(tmp_path / "x.npy")])
    assert result.exit_code == 0, result.output
    values = np.array([float(line.split(",")[0]) for line in result.stdout.splitlines()[1:]])
    expected = portanet.load(COMMITTED_ONNX).predict(load_pima().features[:50])[:, 0]
    assert np.allclose(values, expected, atol=1e-6)


def test_inspect_shows_io_and_metadata():
    result = runner.invoke(app, ["inspect", str(COMMITTED_ONNX), "--json"])
    assert result.exit_code == 0
    assert '"feature_names"' in result.output and '"opset": 17' in result.output


@pytest.mark.parametrize(
    "args, files, code, message",
    [
        (["infer", "{tmp}/missing.onnx", "{csv}"], {}, 3, "missing.onnx: no such file"),
        (["infer", "{onnx}", "{tmp}/missing.csv"], {}, 2, "missing.csv: no such file"),
        (["export", "{tmp}/notes.h5"], {"notes.h5": "just some text\n"}, 3, "not a model file"),
        (
            ["infer", "{tmp}/notes.onnx", "{csv}"],
            {"notes.onnx": "just text"},
            3,
            "expected an ONNX model",
        ),
        (
            ["infer", "{onnx}", "{tmp}/wide.csv"],
            {"wide.csv": "1,2,3,4,5,6,7,8,9\n"},
            2,
            "line 1: expected 8 columns, got 9",
        ),
        (
            ["infer", "{onnx}", "{tmp}/short.csv"],
            {"short.csv": PIMA_HEADER + "\n1,2,3,4,5,6,7,8\n1,2,3\n"},
            2,
            "line 3: expected 8 columns like the header, got 3",
        ),
        (
            ["infer", "{onnx}", "{tmp}/text.csv"],
            {"text.csv": PIMA_HEADER + "\n1,2,3,4,5,6,7,8\n1,high,3,4,5,6,7,8\n"},
            2,
            "line 3, column 'glucose': expected a number, got 'high'",
        ),
        (
            ["infer", "{onnx}", "{tmp}/cols.csv"],
            {"cols.csv": "a,b,c\n1,2,3\n"},
            2,
            "missing ['pregnancies'",
        ),
        (["export", "{onnx}", "--opset", "3"], {}, 3, "not a model file"),
    ],
    ids=[
        "missing-model",
        "missing-input",
        "text-as-h5",
        "text-as-onnx",
        "too-many-columns",
        "short-row",
        "non-numeric",
        "wrong-names",
        "onnx-given-to-export",
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, args, files, code, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(tmp=tmp_path, csv=pima_csv_path(), onnx=COMMITTED_ONNX) for a in args]
    result = run_cli(*argv, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().startswith("error:")
    assert not list(tmp_path.glob("*.tmp*"))


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "infer", str(tmp_path / "none.onnx"), "x.csv")
    assert result.returncode != 0 and "Traceback" in result.stderr.decode()


def test_bad_value_leaves_no_partial_output(tmp_path):
    src = tmp_path / "in.csv"
    good = "\n".join("1,2,3,4,5,6,7,8" for _ in range(3000))
    src.write_text(PIMA_HEADER + "\n" + good + "\n1,2,3,4,x,6,7,8\n")
    target = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        [
            "infer",
            str(COMMITTED_ONNX),
            str(src),
            "--output",
            str(target),
            "--rows-per-batch",
            "100",
        ],
    )
    assert result.exit_code == 2
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_python_dash_m_runs_the_same_app():
    result = run_cli("--help")
    assert result.returncode == 0 and "export" in result.stdout.decode()
