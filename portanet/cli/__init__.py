"""The ``portanet`` command line: typer + rich, a thin skin over the library.

:mod:`.app` holds the app and its error handling, :mod:`.options` the options several commands
share; each other module adds one command group. Nothing else in portanet imports this package.
"""

from __future__ import annotations

import sys

# Importing a command module registers its commands, in this order in --help.
from portanet.cli import train  # noqa: F401  # isort: skip
from portanet.cli import export, infer, inspect, optimize, serve  # noqa: F401  # isort: skip
from portanet.cli.app import INTERRUPTED, answer_interrupts, app, interrupted, run

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: Ctrl-C is answered within a second (exit 130), however
    long the native call (onnxruntime, TensorFlow, an image decoder) the process is in."""
    answer_interrupts()
    try:
        status = run()
    except KeyboardInterrupt:
        interrupted()
    if status == INTERRUPTED:  # typer's answer to KeyboardInterrupt: skip the slow teardown
        interrupted()
    sys.exit(status)
