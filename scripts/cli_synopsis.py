"""Write the CLI reference page of the docs from the real command line: a synopsis built from
the typer/click parameters, then every command's ``--help`` as the command prints it.

    .venv/bin/python scripts/cli_synopsis.py           # rewrite docs/reference/cli.md
    .venv/bin/python scripts/cli_synopsis.py --check   # exit 1 if the page has drifted

tests/cli/test_synopsis.py runs the check, so the reference cannot drift from ``--help``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "cli.md"
WIDTH = 98
#: --help is rendered at a fixed width, without colour, whatever the terminal
HELP_ENV = {"TERMINAL_WIDTH": "100", "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def _type_name(param: object, ctx: object) -> str:
    """The parameter's type as --help shows it (typer ≥ 0.29 has display_type; older ones
    expose click's ParamType)."""
    if hasattr(param, "display_type"):
        return str(param.display_type(ctx))
    kind = param.type
    choices = getattr(kind, "choices", None)
    return "|".join(map(str, choices)) if choices else str(getattr(kind, "name", kind))


def _metavar(type_name: str) -> str:
    name = type_name.strip("<>").replace(" range", "").replace(" RANGE", "")
    if "|" in name:
        return name.lower()
    return {"int": "N", "float": "F", "str": "TEXT"}.get(name.lower(), name.upper())


def synopsis() -> str:
    """One usage block per command, in ``--help`` order, as a fenced bash block."""
    sys.path.insert(0, str(REPO))
    import typer

    from portanet.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("portanet", ["--help"], resilient_parsing=True)
    lines = [
        "portanet --version",
        "portanet [--debug] COMMAND ...   (--debug also after the command)",
    ]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        words = [f"portanet {name}"]
        for param in command.params:
            if param.name == "help" or getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                words.append(param.metavar or param.name.upper())
                continue
            flag = "/".join(o for o in param.opts + param.secondary_opts)
            if getattr(param, "is_flag", False):
                words.append(f"[{flag}]")
            else:
                metavar = param.metavar or _metavar(_type_name(param, sub))
                words.append(f"[{param.opts[0]} {metavar}]")
        # Wrap between options, never inside one: spaces within a word are held as NUL.
        glued = " ".join(w.replace(" ", "\0") for w in words)
        lines.append(
            textwrap.fill(
                glued,
                WIDTH,
                subsequent_indent=" " * 16,
                break_on_hyphens=False,
                break_long_words=False,
            ).replace("\0", " ")
        )
    return "```\n" + "\n".join(lines) + "\n```"


def command_names() -> list[str]:
    """The commands in ``--help`` order."""
    sys.path.insert(0, str(REPO))
    import typer

    from portanet.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("portanet", ["--help"], resilient_parsing=True)
    return list(group.list_commands(ctx))


def help_text(*words: str) -> str:
    """What ``portanet WORDS --help`` prints, trailing spaces removed."""
    env = {**os.environ, **HELP_ENV, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "portanet", *words, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return "\n".join(line.rstrip() for line in done.stdout.strip("\n").splitlines())


def reference() -> str:
    """The whole page: synopsis, then one section per command."""
    parts = [
        "# CLI reference",
        "",
        "Generated from the real command line by `scripts/cli_synopsis.py`; "
        "`tests/cli/test_synopsis.py` fails when this page and `--help` differ.",
        "",
        "## Synopsis",
        "",
        synopsis(),
        "",
        "## portanet",
        "",
        "```",
        help_text(),
        "```",
    ]
    for name in command_names():
        parts += ["", f"## portanet {name}", "", "```", help_text(name), "```"]
    return "\n".join(parts) + "\n"


def main() -> int:
    new = reference()
    if "--check" in sys.argv[1:]:
        old = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if new != old:
            print(
                f"error: {PAGE.relative_to(REPO)} differs from --help; run scripts/cli_synopsis.py",
                file=sys.stderr,
            )
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
