"""The README's command synopsis is the real --help (scripts/cli_synopsis.py writes it)."""

import subprocess
import sys

from tests.helpers import REPO


def test_readme_synopsis_matches_the_command_line():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_synopsis.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_command_has_help_and_appears_in_the_readme():
    import typer

    from portanet.cli import app

    group = typer.main.get_command(app)
    readme = (REPO / "README.md").read_text()
    for name, command in group.commands.items():
        assert command.help, name
        assert f"portanet {name}" in readme, name
