"""The one exception hierarchy of portanet.

Every error portanet raises on purpose derives from :class:`PortanetError`. Each subclass maps to
one CLI exit code, so the command line can turn any of them into one red line and a stable status.
"""

from __future__ import annotations

from collections.abc import Iterable


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


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name if it has none),
    cut at ``limit`` characters: how a third-party library's error is quoted in ours."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def name_mismatch(expected: Iterable[str], got: Iterable[str]) -> str | None:
    """``None`` when ``got`` holds exactly the names in ``expected``; else what is missing,
    unknown or repeated, e.g. ``"missing ['a']; unknown ['b']"`` (for an error message)."""
    expected, got = list(expected), list(got)
    parts = []
    missing = [n for n in expected if n not in got]
    unknown = [n for n in got if n not in expected]
    repeated = sorted({n for n in got if got.count(n) > 1})
    if missing:
        parts.append(f"missing {missing}")
    if unknown:
        parts.append(f"unknown {unknown}")
    if repeated:
        parts.append(f"repeated {repeated}")
    return "; ".join(parts) or None
