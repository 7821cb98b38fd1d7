"""The one exception hierarchy of portanet.

Every error portanet raises on purpose derives from :class:`PortanetError`. Each subclass maps to
one CLI exit code, so the command line can turn any of them into one red line and a stable status.
"""

from __future__ import annotations


class PortanetError(Exception):
    """Root of every error portanet raises on purpose."""

    exit_code: int = 2


class InputError(PortanetError):
    """Input data or a command-line argument does not fit what was expected (exit 2)."""

    exit_code = 2


class ModelLoadError(PortanetError):
    """A model file is missing, unreadable or not a model portanet can load (exit 3)."""

    exit_code = 3


class ConversionError(PortanetError):
    """A Keras model could not be converted into a valid ONNX model (exit 3)."""

    exit_code = 3


class ParityError(PortanetError):
    """Keras and ONNX outputs differ beyond tolerance (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class UnsafeModelError(PortanetError):
    """A model file would run arbitrary code or read outside its file; refused (exit 4)."""

    exit_code = 4
