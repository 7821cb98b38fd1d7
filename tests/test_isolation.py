"""The deployment path must never import the export side."""

import json
import subprocess
import sys

from conftest import COMMITTED_ONNX, REPO, need

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "h5py", "pandas")

LIBRARY = f"""
import json, sys
import portanet
model = portanet.load({str(need(COMMITTED_ONNX))!r})
p = model.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])
assert p.shape == (1, 1) and 0 < float(p[0, 0]) < 1
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""

CLI = f"""
import json, sys
from portanet.cli import main
from portanet.datasets import pima_csv_path
sys.argv = ["portanet", "infer", {str(COMMITTED_ONNX)!r}, str(pima_csv_path()),
            "--output", sys.argv[1]]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})),
      file=sys.stderr)
"""


def test_library_load_and_predict_import_no_export_side():
    result = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_cli_infer_imports_no_export_side(tmp_path):
    target = tmp_path / "p.csv"
    result = subprocess.run([sys.executable, "-c", CLI, str(target)], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    assert len(target.read_text().splitlines()) == 769
