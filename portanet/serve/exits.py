"""Exiting a server process that must never hang: stderr that never raises and an
immediate exit, shared by the server and the worker supervisor."""

from __future__ import annotations

import os
import sys

#: Exit status when the drain's deadline or a second signal ends the process.
FORCED_EXIT = 1


class SafeStream:
    """stderr that never raises: a closed or broken pipe turns into silence."""

    def write(self, text: str) -> int:
        try:
            written = sys.__stderr__.write(text) if sys.__stderr__ else 0
            if sys.__stderr__:
                sys.__stderr__.flush()
            return written
        except (OSError, ValueError):
            silence_stderr()
            return len(text)

    def flush(self) -> None:
        pass


def silence_stderr() -> None:
    """Point fd 2 at /dev/null so that no later write (ours, uvicorn's, the interpreter's at
    exit) can fail or block on a pipe nobody reads."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except OSError:
        pass


def exit_now(status: int) -> None:
    """End the process now with ``status``; stderr is silenced first so nothing can block."""
    silence_stderr()
    os._exit(status)
