"""The three commands are registered, documented in their --help and in the README."""

import re

import pytest
from typer.testing import CliRunner

from portanet.cli import app
from tests.helpers import REPO


@pytest.mark.parametrize("command", ["optimize", "bench", "report"])
def test_command_has_help_and_is_in_the_readme(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert re.search(rf"portanet {command}\b", (REPO / "README.md").read_text())
