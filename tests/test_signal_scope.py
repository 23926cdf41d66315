"""When a signal may cut a run short: the first one interrupts it, every later one is answered
(not obeyed), and a storm of them leaves the clean-up its time."""

from __future__ import annotations

import os
import signal

import pytest

from deploylib.signal_scope import SignalScope


def test_the_first_signal_interrupts_and_a_later_one_is_only_answered(
    capfd: pytest.CaptureFixture[str],
) -> None:
    scope = SignalScope()
    with scope.active():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # never reached: the handler raises first
        scope.finishing("putting the fleet back")
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the clean-up goes on
    assert "still putting the fleet back" in capfd.readouterr().err


def test_a_storm_of_signals_during_the_clean_up_is_answered_once_a_second(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Each answer is a write to the terminal; written for every signal of a held Ctrl-C, the
    handler nests in itself while it writes until the stack overflows (RecursionError inside
    the put-back) or leaves the main thread no time to put the fleet back."""
    scope = SignalScope()
    before = signal.getsignal(signal.SIGINT)
    with scope.active():
        scope.finishing("releasing the locks")
        for _ in range(2000):
            os.kill(os.getpid(), signal.SIGINT)
    said = capfd.readouterr().err.count("still releasing the locks")
    assert 1 <= said <= 2, said
    assert signal.getsignal(signal.SIGINT) is before  # the scope gives the handler back
