"""Write the README's command synopsis from the real command line (typer/click parameters).

    .venv/bin/python scripts/cli_synopsis.py           # rewrite README.md between the markers
    .venv/bin/python scripts/cli_synopsis.py --check   # exit 1 if README.md has drifted

tests/cli/test_synopsis.py runs the check, so the README cannot drift from ``--help``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BEGIN, END = "<!-- synopsis:begin (scripts/cli_synopsis.py) -->", "<!-- synopsis:end -->"
WIDTH = 98


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


def rewritten(text: str) -> str:
    """README text with the block between the markers replaced by the current synopsis."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{synopsis()}\n{END}{tail}"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"error: {README} has no synopsis markers", file=sys.stderr)
        return 1
    new = rewritten(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print(
                "error: README.md's command synopsis differs from --help; run "
                "scripts/cli_synopsis.py",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
