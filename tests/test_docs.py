"""The documentation: the mkdocs site builds with --strict (a broken link or anchor fails it),
the README stays a short front page whose links resolve, and the quick start is two commands."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

MKDOCS = Path(sys.executable).with_name("mkdocs")


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    if not MKDOCS.exists():
        pytest.fail(f"{MKDOCS} is missing: install the docs group (scripts/test.sh does)")
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(MKDOCS.parent)},
    )


def test_the_site_builds_strictly(tmp_path):
    result = _build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


@pytest.mark.parametrize(
    "broken",
    ["[gone](no-such-page.md)", "[gone](architecture.md#no-such-heading)"],
    ids=["page", "anchor"],
)
def test_a_broken_link_fails_the_build(tmp_path, broken):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + f"\n{broken}\n")
    result = _build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such" in result.stdout + result.stderr


def test_the_readme_is_a_short_front_page_whose_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (REPO / target).exists(), target


def test_the_quick_start_is_two_commands_that_exist():
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./scripts/quickstart.sh", "./scripts/test.sh"]
    for command in commands:
        assert (REPO / command).stat().st_mode & 0o111, command
