"""The ``deploylib`` program: Invoke's Program over ``deploylib.tasks.ns``; no tasks.py needed."""

from __future__ import annotations

import signal
from types import FrameType

from invoke.program import Program

from deploylib import __version__
from deploylib.tasks import ns

program = Program(namespace=ns, name="deploylib", binary="deploylib", version=__version__)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP (a closed terminal) get the same orderly stop as Ctrl-C: unfinished
    # releases removed, switched hosts put back, locks released
    raise KeyboardInterrupt


def main() -> None:
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _terminate)
    program.run()
