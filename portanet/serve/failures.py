"""How the server reports its own failures (HTTP 500, gRPC INTERNAL): one timestamped log line
naming the exception, with its traceback when the server runs with ``--debug``."""

from __future__ import annotations

import logging

log = logging.getLogger("portanet.serve")


def log_internal_error(what: str, exc: BaseException, debug: bool) -> None:
    """Log a failure answered with 500: ``what``, the exception's type and message, and (with
    ``debug``) the traceback."""
    if debug:
        log.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
    else:
        log.error(
            "%s: %s: %s (start the server with --debug for the traceback)",
            what,
            type(exc).__name__,
            exc,
        )
