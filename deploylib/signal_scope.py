"""The signals a run listens to, and when they may cut it short.

While a run lasts, the first Ctrl-C, SIGTERM or SIGHUP interrupts it (as Ctrl-C) and every later
one only says what is still being done: once a run fails or finishes, its clean-up — putting the
fleet back, the release log, the unlock — is never cut short; stopping half-way is how fleets end
up split. The handler writes to stderr directly: it takes no lock a reporter may hold at that
moment, and says so at most once a second: a storm of signals (a held Ctrl-C, a supervisor
re-sending SIGINT) must leave the clean-up the time to run, and must not nest the handler in
itself until the stack overflows. (Main thread only: elsewhere signals cannot be handled and the
run is as it is.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from deploylib.run_state import say

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: seconds between two "still ..." messages
SAY_EVERY = 1.0


class SignalScope:
    """Whether a signal may interrupt the run now, and what the run is doing when it may not."""

    def __init__(self) -> None:
        self.interruptible = True
        self.doing = "cleaning up"
        #: when the last "still ..." message was written (handlers run in the main thread only)
        self._said_at = -SAY_EVERY

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Handle the stop signals for as long as the block runs."""
        self.interruptible = True
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.interruptible:
                self.interruptible = False
                raise KeyboardInterrupt
            now = time.monotonic()
            if now - self._said_at < SAY_EVERY:
                return  # said a moment ago, or saying it right now (a signal during the write)
            self._said_at = now
            say(
                f"deploylib: still {self.doing}; it exits when that is done "
                "(the hosts are left on one release)\n"
            )

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def failed(self) -> None:
        """The run failed: from here on a signal must not cut its clean-up."""
        self.interruptible = False

    def finishing(self, doing: str) -> None:
        """From here on the run finishes whatever happens: signals only get told ``doing``."""
        self.interruptible = False
        self.doing = doing
