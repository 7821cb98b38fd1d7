"""The house's rules: the deployment path never imports the export side; no import cycles."""

import json
import subprocess
import sys
from pathlib import Path

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
