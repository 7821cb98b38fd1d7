"""``portanet infer`` imports only what it needs (cold start; benchmarks/run.py times it)."""

from __future__ import annotations

import re

from tests.helpers import COMMITTED_ONNX, run_cli


def test_infer_imports_neither_pydantic_nor_printing_tables_nor_the_export_side(tmp_path):
    rows = tmp_path / "one.csv"
    rows.write_text(
        "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,"
        "diabetes_pedigree,age\n6,148,72,35,0,33.6,0.627,50\n"
    )
    done = run_cli("infer", str(COMMITTED_ONNX), str(rows), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stderr[-1000:]
    imported = set(re.findall(rb"\|\s+([\w.]+)\s*$", done.stderr, flags=re.M))
    assert b"onnxruntime" in imported and b"pyarrow.csv" in imported  # the probe works
    for heavy in (
        b"pydantic",
        b"rich.table",
        b"tensorflow",
        b"keras",
        b"onnx",
        b"pandas",
        b"portanet.export",
    ):
        assert heavy not in imported, heavy
