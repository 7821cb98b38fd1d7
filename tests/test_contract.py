"""The house's rules: the deployment path never imports the export side; no import cycles."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import COMMITTED_ONNX, REPO

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "h5py", "pandas")

LIBRARY = f"""
import json, sys
import portanet
model = portanet.load({str(COMMITTED_ONNX)!r})
p = model.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])
assert p.shape == (1, 1) and 0 < float(p[0, 0]) < 1
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""

CLI = f"""
import json, sys
from portanet.cli import main
from portanet.reference.data import pima_csv_path
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
    result = subprocess.run(
        [sys.executable, "-c", LIBRARY], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_cli_infer_imports_no_export_side(tmp_path):
    target = tmp_path / "p.csv"
    result = subprocess.run(
        [sys.executable, "-c", CLI, str(target)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    assert len(target.read_text().splitlines()) == 769


def test_import_contract_holds():
    """import-linter's contracts in pyproject.toml: the runtime side never imports the export
    side or TensorFlow/Keras/tf2onnx/onnx, nothing imports the CLI, layers point downwards."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# Each rule broken on purpose in a copy of the tree: (contract id, module to edit, line to add,
# the import lint-imports must name). A rule that cannot fail guards nothing.
PROBES = [
    ("layers", "runtime/inspect.py", "import portanet.serve.app", "portanet.serve.app"),
    ("layers", "serve/metrics.py", "import portanet.scale.engine", "portanet.scale.engine"),
    ("layers", "scale/values.py", "import portanet.serve.app", "portanet.serve.app"),
    ("layers", "tables/readers.py", "import portanet.report.build", "portanet.report.build"),
    ("layers", "export/pipeline.py", "import portanet.optimize.bench", "portanet.optimize.bench"),
    # the export -> reference cycle stays closed beyond the one ignored import
    ("layers", "export/pipeline.py", "import portanet.reference.train", "portanet.reference"),
    ("layers", "schema.py", "import portanet.runtime.providers", "portanet.runtime.providers"),
    ("layers", "errors.py", "import portanet.schema", "portanet.schema"),
    ("layers", "images/_probe.py", "import portanet.runtime.model", "portanet.runtime.model"),
    ("runtime-side", "tables/parquet.py", "import onnx", "onnx"),
    ("runtime-side", "serve/app.py", "import tensorflow", "tensorflow"),
    ("runtime-side", "scale/ledger.py", "import portanet.export.recorded", "portanet.export"),
    ("runtime-side", "runtime/guard.py", "import h5py", "h5py"),
    ("runtime-side", "tables/writers.py", "import matplotlib", "matplotlib"),
    ("runtime-side", "runtime/providers.py", "import onnxslim", "onnxslim"),
    ("tensorflow-only-in-export", "report/charts.py", "import tensorflow", "tensorflow"),
    ("tensorflow-only-in-export", "optimize/evaluate.py", "import keras", "keras"),
    ("tensorflow-only-in-export", "cli/infer.py", "import tf2onnx", "tf2onnx"),
    ("no-cli", "report/payload.py", "import portanet.cli.app", "portanet.cli"),
    ("no-cli", "_files.py", "import portanet.cli", "portanet.cli"),
]


@pytest.mark.parametrize(
    ("contract", "module", "line", "named"),
    PROBES,
    ids=[f"{c}:{m}:{line.split()[-1]}" for c, m, line, _ in PROBES],
)
def test_each_contract_can_fail(tmp_path, contract, module, line, named):
    shutil.copytree(
        REPO / "portanet", tmp_path / "portanet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "portanet" / module
    if not target.parent.exists():  # an optional layer not in this tree yet
        target.parent.mkdir()
        (target.parent / "__init__.py").write_text("")
    text = target.read_text() if target.exists() else ""
    target.write_text(text + f"\n{line}  # probe\n")
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [str(lint), "--no-cache", "--no-logo", "--contract", contract],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "1 broken" in result.stdout, result.stdout
    assert named in result.stdout, result.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    import grimp

    graph = grimp.build_graph("portanet", cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
