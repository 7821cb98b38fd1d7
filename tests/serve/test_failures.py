"""A 500 in the log: one line naming the exception, the traceback only with --debug (the
real-server version of this is tests/serve/test_app.py's ZipMap test)."""

from __future__ import annotations

import logging

import pytest

from portanet.serve.failures import log_internal_error


def _raised() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


@pytest.mark.parametrize("debug", [True, False])
def test_one_error_line_and_the_traceback_only_under_debug(caplog, debug):
    with caplog.at_level(logging.ERROR, logger="portanet.serve"):
        log_internal_error("model m: infer answered 500", _raised(), debug)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("model m: infer answered 500: ValueError: boom")
    if debug:
        assert record.exc_info is not None and "in _raised" in caplog.text
    else:
        assert record.exc_info is None and "Traceback" not in caplog.text
        assert "--debug for the traceback" in record.getMessage()
