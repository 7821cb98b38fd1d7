"""SIGTERM and SIGINT during a Ray run: a clean unwind with one line, never a half-written output.

Inside :func:`stop_on_signals` both signals raise :class:`Interrupted` in the main thread, so a
run stops its cluster, removes its staging folder and exits with ``128 + signal``. Ray's own
handling (a native stack dump, ``sys.exit(15)`` from the handler ``ray.init`` installs) is
kept out of the way: the signals are held while Ray connects, a signal whose exception a
library swallowed is raised again at the end of the block, and one that arrives while the
finished output is being published is only recorded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from portanet.errors import PortanetError


class Interrupted(PortanetError):
    """The run was stopped by a signal (SIGTERM or SIGINT); nothing was written."""

    exit_code = 130


class SignalStop:
    """What :func:`stop_on_signals` saw: the signals received in its block."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.publishing = False

    def check(self) -> None:
        """Raise :class:`Interrupted` for a signal received in the block, also when the
        exception its handler raised was swallowed (a handler runs wherever the main thread
        is, and a library's ``except Exception`` or a native callback can eat what it raises)."""
        if self.received and not self.publishing:
            raise _interrupted(self.received[0])

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        """Run the block (publishing the output) after a last :meth:`check`; a signal that
        arrives meanwhile is only recorded: it no longer undoes the run, which ends as a
        success."""
        self.check()
        self.publishing = True
        yield


def _interrupted(signum: int) -> Interrupted:
    error = Interrupted(f"stopped by {signal.Signals(signum).name}; nothing was written")
    error.exit_code = 128 + signum
    return error


@contextlib.contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """SIGTERM (and SIGINT) raise :class:`Interrupted` in the main thread for the block, so
    a run unwinds (cluster stopped, staging removed) and exits with one line. A signal whose
    exception was swallowed is raised again when the block ends (see :meth:`SignalStop.check`).
    Outside the main thread the block runs with the signals as they are."""
    state = SignalStop()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def stop(signum: int, _frame: Any) -> None:
        state.received.append(signum)
        if not state.publishing:
            raise _interrupted(signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in previous:
            signal.signal(sig, stop)
        yield state
        state.check()
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)


_HELD = {signal.SIGTERM, signal.SIGINT}


def hold_signals() -> bool:
    """Block SIGTERM and SIGINT in this (main) thread while Ray connects: one that lands
    inside ``ray.init`` was seen to leave Ray's state accessor deadlocked in ``ray.shutdown``.
    Ray's own threads, started meanwhile, keep them blocked, so they reach the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    return True


def release_signals(held: bool) -> None:
    """Unblock what :func:`hold_signals` blocked; a pending signal is handled now."""
    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)


@contextlib.contextmanager
def sigterm_during_init() -> Iterator[None]:
    """``ray.init`` installs a SIGTERM handler that calls ``sys.exit(15)``: a SIGTERM that
    arrives while it connects becomes :class:`Interrupted` like any other."""
    try:
        yield
    except SystemExit as exc:
        if exc.code == signal.SIGTERM:
            raise _interrupted(signal.SIGTERM) from None
        raise


def restore_python_signals() -> None:
    """``ray.init`` may install its own SIGTERM handler; put portanet's back."""
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if not callable(current) or getattr(current, "__name__", "") != "stop":
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and getattr(handler, "__name__", "") == "stop":
            signal.signal(signal.SIGTERM, handler)


__all__ = [
    "Interrupted",
    "SignalStop",
    "hold_signals",
    "release_signals",
    "restore_python_signals",
    "sigterm_during_init",
    "stop_on_signals",
]
