"""The typer app, its error handling and its global options (``--debug``, ``--version``).

Every command module in this package adds its commands to :data:`app`; each command parses its
options and calls one library function, wrapped in :func:`guarded`, which turns a
:class:`~portanet.errors.PortanetError` into one ``error:`` line on stderr and its exit code.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from portanet import __version__
from portanet.errors import PortanetError, first_line

# TensorFlow's C++ start-up logging would bury the one line a user needs; only errors pass.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class PlainUsageCommand(typer.core.TyperCommand):
    """Usage lines in the POSIX way, ``MODEL INPUT...``: typer writes required arguments in
    braces (``{MODEL} {INPUT...}``), which reads like a set or a template. Typer's documented
    extension point (a command class passed as ``cls``) and click's public
    ``collect_usage_pieces``; the same on typer 0.28 and 0.29."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [_unbraced(piece) for piece in super().collect_usage_pieces(ctx)]


def _unbraced(piece: str) -> str:
    """``{MODEL}`` → ``MODEL``; ``{INPUT...}`` (0.28), ``{INPUT...}...`` (0.29) → ``INPUT...``."""
    if not piece.startswith("{"):
        return piece
    inner, _, rest = piece[1:].rpartition("}")
    if rest not in ("", "...") or not inner:
        return piece
    return inner if inner.endswith("...") or not rest else inner + rest


class PortanetApp(typer.Typer):
    """The application: every command gets :class:`PlainUsageCommand` unless it names another."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or PlainUsageCommand, **kwargs)


app = PortanetApp(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keras → ONNX with a parity gate, and fast TensorFlow-free inference.",
)


class _PipeConsole(Console):
    """A rich console whose closed pipe ends the process with :data:`BROKEN_PIPE` (141, like
    any Unix tool under ``| head``), not rich's default exit status 1."""

    def on_broken_pipe(self) -> None:
        _quiet_stdout()
        raise SystemExit(BROKEN_PIPE)


def _console(stderr: bool) -> Console:
    """A console that wraps at the terminal's width, and never when the stream is a pipe or a
    file (rich would otherwise cut lines at 80 columns for whoever reads the log)."""
    console = _PipeConsole(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = _PipeConsole(stderr=stderr, width=100_000, soft_wrap=True)
    return console


out = _console(stderr=False)
err = _console(stderr=True)
#: Which extra provides each optional import (what a missing one tells the user to install).
EXTRAS = {
    "tensorflow": "export",
    "keras": "export",
    "tf_keras": "export",
    "tf2onnx": "export",
    "onnx": "export",
    "h5py": "export",
    "PIL": "images",
    "sklearn": "dev",
    "pytest": "dev",
    "pandas": "dev",
}
#: Exit status of a process whose output pipe was closed (128 + SIGPIPE), like any Unix tool.
BROKEN_PIPE = 141
state = {"debug": bool(os.environ.get("PORTANET_DEBUG"))}
F = TypeVar("F", bound=Callable[..., Any])
#: Exit status of an error portanet did not expect (a bug): see ``--debug``.
INTERNAL_ERROR = 70
USAGE_ERROR = 2


def print_error(message: str) -> None:
    """One red ``error:`` line (and any further lines of the message) on stderr."""
    lines = message.splitlines() or [""]
    err.print(Text.assemble(("error: ", "bold red"), lines[0]), highlight=False, soft_wrap=True)
    for line in lines[1:]:
        err.print(line, highlight=False, markup=False, soft_wrap=True)


def guarded(func: F) -> F:
    """Turn a PortanetError into one red line on stderr and its exit code (traceback: --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PortanetError as exc:
            if state["debug"]:
                raise
            # Drop the frames' locals now: Arrow and onnxruntime objects kept alive by the
            # traceback would otherwise be destroyed during interpreter shutdown, after their
            # thread pools, which can abort the process.
            traceback.clear_frames(exc.__traceback__)
            print_error(str(exc) or type(exc).__name__)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(BROKEN_PIPE) from None
        except Exception as exc:
            if state["debug"]:
                raise
            traceback.clear_frames(exc.__traceback__)
            message = _known_failure(exc)
            if message is not None:
                print_error(message)
                raise typer.Exit(USAGE_ERROR) from None
            err.print(
                Text.assemble(
                    ("internal error: ", "bold red"),
                    f"{type(exc).__name__}: {first_line(exc)} (run with --debug for the traceback)",
                ),
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _known_failure(exc: Exception) -> str | None:
    """The one line for a failure that is the environment's, not a bug: a missing optional
    import (which extra to install), a full disk or read-only file system (which path)."""
    if isinstance(exc, ModuleNotFoundError):
        root = (exc.name or "").split(".")[0]
        if root in EXTRAS:
            return (
                f"this command needs {root!r}, which is not installed: expected "
                f"`pip install 'portanet[{EXTRAS[root]}]'`"
            )
        return None
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENOSPC,
        errno.EFBIG,
        errno.EDQUOT,
        errno.EROFS,
    ):
        return (
            f"{exc.filename or 'output'}: expected room to write, got "
            f"{os.strerror(exc.errno).lower()}"
        )
    return None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail again on the
    closed pipe (what ``| head`` leaves behind)."""
    with _suppress_os_errors():
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


#: Exit status after Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
#: Seconds the main thread has after Ctrl-C to unwind (remove temporary files) on its own.
INTERRUPT_GRACE = 0.5


def interrupted() -> NoReturn:
    """End at once after Ctrl-C: one line, exit 130, no slow interpreter teardown (TensorFlow's
    and onnxruntime's thread pools). Temporary files were removed while the exception unwound."""
    with _suppress_os_errors():
        err.print(Text.assemble(("interrupted", "bold red")), highlight=False)
        sys.stderr.flush()
    os._exit(INTERRUPTED)


def answer_interrupts() -> None:
    """Make Ctrl-C end the process within a second even while the main thread is inside a long
    native call, where Python's own handler cannot run: the signal is also written to a pipe
    (``signal.set_wakeup_fd``), and a watcher thread ends the process when the main thread has
    not done so within :data:`INTERRUPT_GRACE` seconds. Call from the main thread."""
    import signal
    import threading
    import time

    default = signal.default_int_handler
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: keep Python's default handling
        os.close(read)
        os.close(write)
        return

    def watch() -> None:
        while True:
            try:
                received = os.read(read, 64)
            except OSError:
                return
            # Only Python's default Ctrl-C handling is sped up: a command with its own handler
            # (serve drains its requests first) keeps it.
            if signal.SIGINT in received and signal.getsignal(signal.SIGINT) is default:
                time.sleep(INTERRUPT_GRACE)
                interrupted()

    threading.Thread(target=watch, name="portanet-interrupt", daemon=True).start()


def _stdout_is_devnull() -> bool:
    """True when stdout was pointed at /dev/null, what rich does on a closed pipe."""
    try:
        mine, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError):
        return False
    return (mine.st_dev, mine.st_ino) == (null.st_dev, null.st_ino)


def _suppress_os_errors() -> Any:
    import contextlib

    return contextlib.suppress(OSError, ValueError)


def _show_version(value: bool) -> None:
    if value:
        out.print(f"portanet {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and info lines.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print portanet's version and exit.",
        ),
    ] = False,
) -> None:
    """portanet: Keras → ONNX with a parity gate, and fast TensorFlow-free inference."""
    if debug:
        state["debug"] = True
    logger = logging.getLogger("portanet")
    if not logger.handlers:
        logger.addHandler(_WarningLine())
        logger.propagate = False
    logger.setLevel(logging.INFO if state["debug"] else logging.WARNING)


class _WarningLine(logging.Handler):
    """portanet's log warnings as one yellow line on stderr (info only with --debug)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or state["debug"]:
            label = "warning" if record.levelno >= logging.WARNING else "info"
            err.print(
                Text.assemble((f"{label}: ", "bold yellow"), record.getMessage()), soft_wrap=True
            )


def run(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    ``--debug`` is accepted anywhere before ``--``; a usage error (unknown option, bad value)
    is one ``error:`` line like every other error, with exit status 2.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:cut]:
        args = [a for i, a in enumerate(args) if not (a == "--debug" and i < cut)]
        state["debug"] = True
        args.insert(0, "--debug")
    try:
        status = app(args=args, prog_name="portanet", standalone_mode=False)
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
    except BrokenPipeError:  # the reader of stdout left (| head): end quietly, like any tool
        _quiet_stdout()
        return BROKEN_PIPE
    except SystemExit as exc:  # rich's own consoles (typer's --help) exit 1 on a closed pipe
        if exc.code == 1 and _stdout_is_devnull():
            return BROKEN_PIPE
        raise
    except typer.TyperException as exc:  # click's usage errors derive from it (typer >= 0.26)
        print_error(f"{exc.format_message()} (see 'portanet --help')")
        return exc.exit_code if exc.exit_code else USAGE_ERROR
    except typer.Abort:
        print_error("aborted")
        return 1
    return status if isinstance(status, int) else 0
