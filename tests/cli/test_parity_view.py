"""How the CLI shows a parity report: the table's rows and the JSON form on stdout."""

import json

import numpy as np

from portanet.cli import parity_view
from portanet.export.verify.compare import compare


def _report():
    ref = np.zeros((4, 2))
    cand = ref.copy()
    cand[1, 1] = 0.5
    return compare({"scores": ref, "other": ref}, {"scores": cand, "other": ref.copy()})


def test_the_parity_table_has_a_row_per_output_with_its_result():
    table = parity_view.parity_table(_report(), "gate")
    assert table.row_count == 2
    cells = [list(column.cells) for column in table.columns]
    assert "scores" in cells[0] and "other" in cells[0]
    assert any("FAIL" in str(cell).upper() for column in cells for cell in column)


def test_json_goes_to_stdout(capsys):
    parity_view.show(_report(), True, "a vs b")
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] is False
    assert [o["name"] for o in document["outputs"]] == ["scores", "other"]
