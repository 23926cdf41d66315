"""The ``deploylib`` program: Invoke's Program over ``deploylib.tasks.ns``; no tasks.py needed."""

from __future__ import annotations

from invoke.program import Program

from deploylib import __version__
from deploylib.tasks import ns

program = Program(namespace=ns, name="deploylib", binary="deploylib", version=__version__)


def main() -> None:
    program.run()
