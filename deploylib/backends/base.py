"""The Backend interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from deploylib.commands import Command, Operation, Probe, Result, Upload
from deploylib.hosts import Host
from deploylib.probes import perform_probe

__all__ = ["INTERRUPTED", "Backend", "Result"]

#: the exit status of an operation stopped, or refused, because of Ctrl-C
INTERRUPTED = 130


class Backend(ABC):
    """Runs operations on one target. Subclasses implement ``run`` and ``upload``."""

    #: a backend that only shows what it would do (dry-run) changes nothing and reads nothing
    dry = False

    def __init__(self, host: Host) -> None:
        self.host = host
        self._halted = False

    def execute(self, op: Operation) -> Result:
        if self._halted:
            return Result(INTERRUPTED, stderr="interrupted")
        if isinstance(op, Command):
            return self.run(op)
        if isinstance(op, Upload):
            if op.unless and not self.dry:
                present = self.run(Command(op.unless, timeout=op.timeout, description="test"))
                if present.unreachable or present.timed_out or present.exit_code == INTERRUPTED:
                    return present
                if present.ok:
                    return Result(0, note="", stdout="already there: not sent\n")
            return self.upload(op)
        return self.probe(op)

    @abstractmethod
    def run(self, command: Command) -> Result: ...

    @abstractmethod
    def upload(self, upload: Upload) -> Result: ...

    def probe(self, probe: Probe) -> Result:
        return perform_probe(probe)

    def resolved(self) -> dict[str, object]:
        """How this target is reached, as resolved from the settings (``check --verbose``);
        nothing for this machine."""
        return {}

    def halt(self) -> None:
        """Ctrl-C: stop what runs now (``abort``) and start nothing more until ``resume``."""
        self._halted = True
        self.abort()

    def resume(self) -> None:
        """Accept operations again (the clean-up after an interrupt)."""
        self._halted = False

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Make operations running now (in other threads) return at once, as failed.

        Called on Ctrl-C; the backend must still work afterwards, for the clean-up.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default backend holds none."""
