"""portanet.cli.app: errors become one line and a stable exit code, usage lines read the POSIX
way on typer's public API, and --debug works anywhere before ``--``."""

import errno
import importlib

import pytest
import typer

from portanet.cli.app import PortanetApp, _unbraced, guarded, run
from portanet.errors import ConversionError, InputError, ParityError, UnsafeModelError

cli_app = importlib.import_module("portanet.cli.app")  # the module (portanet.cli.app is the app)


@pytest.mark.parametrize(
    ("piece", "plain"),
    [
        ("{MODEL}", "MODEL"),
        ("{INPUT...}", "INPUT..."),  # typer 0.28
        ("{INPUT...}...", "INPUT..."),  # typer 0.29
        ("{FILE}...", "FILE..."),
        ("[OPTIONS]", "[OPTIONS]"),
        ("{a}b", "{a}b"),
    ],
)
def test_unbraced(piece, plain):
    assert _unbraced(piece) == plain


def _app_raising(exc: BaseException) -> typer.Typer:
    app = PortanetApp()

    @app.command()
    @guarded
    def boom() -> None:
        raise exc

    @app.command()
    def other(name: str) -> None:
        print(name)

    return app


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (InputError("rows.csv: line 3: expected a number"), 2, "error: rows.csv: line 3"),
        (ParityError("outputs differ"), 1, "error: outputs differ"),
        (ConversionError("cannot convert"), 3, "error: cannot convert"),
        (UnsafeModelError("Lambda layer"), 4, "error: Lambda layer"),
        (ModuleNotFoundError("no", name="tensorflow.python"), 2, "portanet[export]"),
        (OSError(errno.ENOSPC, "No space left", "/out/p.csv"), 2, "/out/p.csv: expected room"),
        (ValueError("a bug"), 70, "internal error: ValueError: a bug"),
    ],
    ids=["input", "parity", "conversion", "unsafe", "missing-extra", "disk-full", "bug"],
)
def test_guarded_turns_errors_into_one_line_and_an_exit_code(monkeypatch, capsys, exc, code, line):
    monkeypatch.setitem(cli_app.state, "debug", False)
    assert _run_app(_app_raising(exc), ["boom"]) == code
    err = capsys.readouterr().err
    assert line in err
    assert "Traceback" not in err


def _run_app(app: typer.Typer, args: list[str]) -> int:
    try:
        status = app(args=args, prog_name="portanet", standalone_mode=False)
    except typer.Exit as exit:
        return exit.exit_code
    return status if isinstance(status, int) else 0


def test_usage_errors_are_one_line_with_exit_2(capsys):
    assert run(["infer", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--no-such-option" in err
    assert err.count("\n") == 1


def test_usage_lines_have_no_braces(capsys):
    assert run(["infer", "--help"]) == 0
    out = capsys.readouterr().out
    assert "MODEL INPUT..." in out and "{" not in out.split("Usage:")[1].splitlines()[0]


def test_debug_is_taken_anywhere_before_the_separator(monkeypatch, capsys):
    monkeypatch.setitem(cli_app.state, "debug", False)
    assert run(["doctor", "--json", "--debug"]) in (0, 1)  # doctor exits 1 on a conflict
    assert cli_app.state["debug"] is True
