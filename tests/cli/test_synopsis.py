"""Every command has help, a line in the README and a section in the CLI reference, and the
reference (docs/reference/cli.md, written by scripts/cli_synopsis.py) is the real --help."""

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from portanet.cli import app
from tests.helpers import REPO

COMMANDS = sorted(typer.main.get_command(app).commands)


def test_the_cli_reference_matches_the_command_line():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_synopsis.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_every_command_is_checked():
    assert {"train", "export", "verify", "infer", "inspect", "doctor", "serve"} <= set(COMMANDS)
    assert {"optimize", "bench", "report"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_a_readme_line_and_a_reference_section(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert typer.main.get_command(app).commands[command].help, command
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"portanet {command}\b", readme), f"README lacks `portanet {command}`"
    reference = (REPO / "docs" / "reference" / "cli.md").read_text()
    assert f"\n## portanet {command}\n" in reference, command
