"""portanet.cli.app: errors become one line and a stable exit code, usage lines read the POSIX
way on typer's public API, and --debug works anywhere before ``--``."""

import errno
import importlib

import pytest
import typer

from portanet.cli.app import PortanetApp, _unbraced, guarded, run
from portanet.errors import ConversionError, InputError, ParityError, UnsafeModelError
from portanet.reference.data import pima_csv_path
from tests.helpers import COMMITTED_ONNX, run_cli

PIMA_HEADER = "pregnancies,glucose,blood_pressure,skin_thickness,insulin,bmi,diabetes_pedigree,age"
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


# Through the real command line in subprocesses (moved from test_cli.py).


@pytest.mark.parametrize(
    "args, files, code, message",
    [
        (["infer", "{tmp}/missing.onnx", "{csv}"], {}, 3, "missing.onnx: no such file"),
        (["infer", "{onnx}", "{tmp}/missing.csv"], {}, 2, "missing.csv: no such file"),
        (["export", "{tmp}/notes.h5"], {"notes.h5": "just some text\n"}, 3, "not a model file"),
        (
            ["infer", "{tmp}/notes.onnx", "{csv}"],
            {"notes.onnx": "just text"},
            3,
            "expected an ONNX model",
        ),
        (
            ["infer", "{onnx}", "{tmp}/wide.csv"],
            {"wide.csv": "1,2,3,4,5,6,7,8,9\n"},
            2,
            "line 1: expected 8 columns, got 9",
        ),
        (
            ["infer", "{onnx}", "{tmp}/short.csv"],
            {"short.csv": PIMA_HEADER + "\n1,2,3,4,5,6,7,8\n1,2,3\n"},
            2,
            "line 3: expected 8 columns like the header, got 3",
        ),
        (
            ["infer", "{onnx}", "{tmp}/text.csv"],
            {"text.csv": PIMA_HEADER + "\n1,2,3,4,5,6,7,8\n1,high,3,4,5,6,7,8\n"},
            2,
            "line 3, column 'glucose': expected a number, got 'high'",
        ),
        (
            ["infer", "{onnx}", "{tmp}/cols.csv"],
            {"cols.csv": "a,b,c\n1,2,3\n"},
            2,
            "missing ['pregnancies'",
        ),
        (["export", "{onnx}", "--opset", "3"], {}, 3, "not a model file"),
    ],
    ids=[
        "missing-model",
        "missing-input",
        "text-as-h5",
        "text-as-onnx",
        "too-many-columns",
        "short-row",
        "non-numeric",
        "wrong-names",
        "onnx-given-to-export",
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, args, files, code, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(tmp=tmp_path, csv=pima_csv_path(), onnx=COMMITTED_ONNX) for a in args]
    result = run_cli(*argv, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().startswith("error:")
    assert not list(tmp_path.glob("*.tmp*"))


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "infer", str(tmp_path / "none.onnx"), "x.csv")
    assert result.returncode != 0 and "Traceback" in result.stderr.decode()


def test_python_dash_m_runs_the_same_app():
    result = run_cli("--help")
    assert result.returncode == 0 and "export" in result.stdout.decode()
