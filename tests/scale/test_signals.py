"""SIGTERM/SIGINT handling of the Ray runs, with real signals sent to this process."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from portanet.scale.signals import Interrupted, stop_on_signals


def _signal_self(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the handler runs at the next bytecode
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_raises_interrupted_with_the_conventional_exit_code(sig: signal.Signals):
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as raised, stop_on_signals():
        _signal_self(sig)
    assert raised.value.exit_code == 128 + sig
    assert str(raised.value) == f"stopped by {sig.name}; nothing was written"
    assert signal.getsignal(sig) is before


def test_a_swallowed_interruption_is_raised_again_when_the_block_ends():
    """A library's ``except Exception`` around the point where the handler ran must not turn
    a stopped run into a success (seen once in CI: exit 0 after SIGTERM inside a Ray wait)."""
    swallowed = []
    with pytest.raises(Interrupted) as raised, stop_on_signals() as signals:
        try:
            _signal_self(signal.SIGTERM)
        except Exception as exc:  # what a careless library does
            swallowed.append(exc)
        assert signals.received == [signal.SIGTERM]
    assert [type(e) for e in swallowed] == [Interrupted]
    assert raised.value.exit_code == 143


def test_check_raises_before_publishing_and_a_signal_while_publishing_is_only_recorded():
    with stop_on_signals() as signals:
        signals.check()  # nothing received yet
        with signals.committing():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signals.received == [signal.SIGTERM]
    with pytest.raises(Interrupted), stop_on_signals() as signals:
        with contextlib.suppress(Interrupted):  # the run caught it (and went on)
            _signal_self(signal.SIGINT)
        with signals.committing():  # its last check refuses to publish
            raise AssertionError("published after a signal")
