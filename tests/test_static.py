"""Static checks as tests, so CI runs them: ruff (lint and format) and mypy, configured in
pyproject.toml (mypy strict on runtime/, tables/ and serve/)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / command[0]
    if not tool.exists():
        pytest.fail(f"{tool} is missing: install the dev group (scripts/_venv.sh does)")
    return subprocess.run(
        [str(tool), *command[1:]], capture_output=True, text=True, cwd=REPO, timeout=600
    )


def test_ruff_lint_is_clean():
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _run("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    result = _run("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.slow  # a second whole mypy run; the configuration changes rarely
def test_mypy_is_strict_on_the_runtime_side(tmp_path):
    """The strict flags reach runtime/, tables/ and serve/ (an unannotated function fails there)
    and only there (the same function passes in report/)."""
    import shutil

    shutil.copytree(
        REPO / "portanet", tmp_path / "portanet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    untyped = "\n\ndef probe(x):\n    return x\n"
    for package in ("runtime", "tables", "serve", "report"):
        (tmp_path / "portanet" / package / "_probe.py").write_text(untyped)
    result = subprocess.run(
        [str(BIN / "mypy"), "--no-incremental", "--cache-dir", "/dev/null"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    flagged = {line.split("/")[1] for line in result.stdout.splitlines() if "_probe.py" in line}
    assert flagged == {"runtime", "tables", "serve"}, result.stdout
