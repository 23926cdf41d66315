"""Dry-run: print every operation a deploy would perform, per host, and change nothing."""

from __future__ import annotations

from collections.abc import Callable

from deploylib.backends.base import Backend
from deploylib.commands import Command, Probe, Result, Upload
from deploylib.hosts import Host
from deploylib.secrets import Secret


class PrinterBackend(Backend):
    """Shows operations through ``emit`` (one line each) and reports success."""

    dry = True

    def __init__(self, host: Host, emit: Callable[[str, str], None]) -> None:
        super().__init__(host)
        self._emit = emit

    def run(self, command: Command) -> Result:
        line = command.line
        extras = []
        if command.env:
            extras.append(
                "env: "
                + " ".join(
                    f"{k}=***" if isinstance(v, Secret) else f"{k}={v}"
                    for k, v in command.env.items()
                )
            )
        if command.stdin is not None or command.stdin_file is not None:
            extras.append(command.describe_stdin())
        if command.guard:
            extras.append("only while this deploy holds the lock")
        self._emit(self.host.name, "$ " + line + (f"    # {'; '.join(extras)}" if extras else ""))
        return Result(0)

    def upload(self, upload: Upload) -> Result:
        self._emit(self.host.name, upload.line)
        return Result(0)

    def probe(self, probe: Probe) -> Result:
        self._emit(self.host.name, "check " + probe.line)
        return Result(0)
