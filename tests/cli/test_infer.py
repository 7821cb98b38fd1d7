"""portanet.cli.infer (``portanet infer``): the command writes what the library predicts, CSV on
stdout or a file of any output format, nothing when a value is bad; --workers is parsed."""

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from portanet.cli import app
from portanet.cli.infer import parse_workers
from portanet.errors import InputError
from portanet.reference.data import pima_csv_path
from tests.helpers import COMMITTED_ONNX

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


@pytest.mark.parametrize(
    "text, workers", [(None, None), ("4", 4), ("2,8", (2, 8)), (" 1 , 3 ", (1, 3))]
)
def test_workers_are_n_or_min_max(text, workers):
    assert parse_workers(text) == workers


@pytest.mark.parametrize("text", ["", "two", "1,2,3", "-1", "1.5"])
def test_bad_workers_name_the_flag(text):
    with pytest.raises(InputError, match=r"--workers: expected N or MIN,MAX \(positive integers\)"):
        parse_workers(text)


def test_parquet_output_holds_the_kept_columns_and_the_librarys_answers(tmp_path):
    import pyarrow.parquet as pq

    import portanet
    from portanet.reference.data import load_pima

    target = tmp_path / "sub" / "pred.parquet"
    source = tmp_path / "rows.csv"
    lines = pima_csv_path().read_text().splitlines()
    source.write_text(
        "\n".join([f"id,{lines[0]}"] + [f"r{i},{line}" for i, line in enumerate(lines[1:21])])
    )
    result = runner.invoke(
        app,
        [
            "infer",
            str(COMMITTED_ONNX),
            str(source),
            "--output",
            str(target),
            "--mkdir",
            "--keep-columns",
            "id",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(target).to_pydict()
    assert table["id"] == [f"r{i}" for i in range(20)]
    expected = portanet.load(COMMITTED_ONNX).predict(load_pima().features[:20])[:, 0]
    assert np.allclose(table["probability"], expected, atol=1e-6)
