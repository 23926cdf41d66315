"""A backend that records operations and answers from a script: for tests, ours and users'."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from deploylib.backends.base import Backend
from deploylib.commands import Command, Operation, Probe, Result, Upload
from deploylib.hosts import Host
from deploylib.remote.reading import render_state

Responder = Callable[[Operation], Result | None]


class FakeBackend(Backend):
    """Records every operation in ``operations``; ``responder`` may answer any of them.

    A responder returns a ``Result`` to answer, or ``None`` for the default: success with empty
    output (for the lock and state commands: the state of a target with nothing deployed yet).
    ``fail_when(substring)`` is a shortcut for failing commands whose line contains it. A
    command made of ``parts`` (a switch and its restart, one command on a real target) is
    recorded and answered part by part, as if each ran alone.
    """

    def __init__(self, host: Host | str = "fake", responder: Responder | None = None) -> None:
        super().__init__(host if isinstance(host, Host) else Host(name=host, address=host))
        self.operations: list[Operation] = []
        #: how many commands and uploads it was given: each is an exec channel over SSH (a
        #: command made of ``parts`` is one, its parts are each in ``operations``)
        self.channels = 0
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
        self.channels += 1
        if not command.parts:
            return self._answer(command)
        # a switch and its restart in one command: each part recorded and answered as it would
        # be on its own; the switch's mark once the first passed, as the script prints it
        first, *rest = command.parts
        result = self._answer(first)
        if not result.ok:
            return result
        for part in rest:
            result = self._answer(part)
            if not result.ok:
                break
        mark = f"{command.moved_mark}\n" if command.moved_mark else ""
        return replace(result, stdout=mark + result.stdout)

    def upload(self, upload: Upload) -> Result:
        self.channels += 1
        return self._answer(upload)

    def probe(self, probe: Probe) -> Result:
        return self._answer(probe)

    def close(self) -> None:
        self.closed = True
