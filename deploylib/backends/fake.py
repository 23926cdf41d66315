"""A backend that records operations and answers from a script: for tests, ours and users'."""

from __future__ import annotations

from collections.abc import Callable

from deploylib.backends.base import Backend
from deploylib.commands import Command, Operation, Probe, Result, Upload
from deploylib.hosts import Host
from deploylib.remote.reading import render_state

Responder = Callable[[Operation], Result | None]


class FakeBackend(Backend):
    """Records every operation in ``operations``; ``responder`` may answer any of them.

    A responder returns a ``Result`` to answer, or ``None`` for the default: success with empty
    output (for the lock and state commands: the state of a target with nothing deployed yet).
    ``fail_when(substring)`` is a shortcut for failing commands whose line contains it.
    """

    def __init__(self, host: Host | str = "fake", responder: Responder | None = None) -> None:
        super().__init__(host if isinstance(host, Host) else Host(name=host, address=host))
        self.operations: list[Operation] = []
        self._responders: list[Responder] = [responder] if responder else []
        self.closed = False

    @property
    def lines(self) -> list[str]:
        """Every operation as the line it would run or perform."""
        return [op.line for op in self.operations]

    @property
    def commands(self) -> list[Command]:
        return [op for op in self.operations if isinstance(op, Command)]

    def respond(self, responder: Responder) -> None:
        self._responders.append(responder)

    def fail_when(self, substring: str, *, exit_code: int = 1, stderr: str = "failed") -> None:
        def responder(op: Operation) -> Result | None:
            return Result(exit_code, stderr=stderr) if substring in op.line else None

        self.respond(responder)

    def _answer(self, op: Operation) -> Result:
        self.operations.append(op)
        for responder in reversed(self._responders):
            answer = responder(op)
            if answer is not None:
                return answer
        if isinstance(op, Command) and op.description in ("lock", "read state"):
            return Result(0, render_state())  # a target with nothing deployed yet
        return Result(0)

    def run(self, command: Command) -> Result:
        return self._answer(command)

    def upload(self, upload: Upload) -> Result:
        return self._answer(upload)

    def probe(self, probe: Probe) -> Result:
        return self._answer(probe)

    def close(self) -> None:
        self.closed = True
