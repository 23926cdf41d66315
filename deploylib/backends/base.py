"""The Backend interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace

from deploylib.commands import Command, Operation, Probe, Result, Upload
from deploylib.hosts import Host
from deploylib.probes import perform_probe

__all__ = ["INTERRUPTED", "Backend", "OutputSink", "Result"]

#: the exit status of an operation stopped, or refused, because of Ctrl-C
INTERRUPTED = 130
#: how long a stopped command's processes get between TERM and KILL (its traps run: a
#: registry logout, a temp file removed)
STOP_GRACE = 2.0

#: where a streamed command's output goes as it arrives: the stream (``"stdout"`` or
#: ``"stderr"``) and a piece of its text, of any size (lines are the receiver's business).
#: Called from the thread that runs the command.
OutputSink = Callable[[str, str], None]


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

    def stream(self, command: Command, sink: OutputSink) -> Result:
        """Run ``command`` with its output handed to ``sink`` as it arrives instead of kept:
        the result's stdout is empty and its stderr holds only what the backend itself has to
        say (why it gave up: unreachable, timed out, interrupted). For output without end
        (``tail -F``), which ``run`` would keep in memory."""
        if self._halted:
            return Result(INTERRUPTED, stderr="interrupted")
        return self._stream(command, sink)

    def _stream(self, command: Command, sink: OutputSink) -> Result:
        """Backends that cannot stream (fake, printer) hand over the whole output at the end."""
        result = self.run(command)
        if result.stdout:
            sink("stdout", result.stdout)
        if result.unreachable or result.timed_out:
            return replace(result, stdout="")  # its stderr says why: the backend's own words
        if result.stderr:
            sink("stderr", result.stderr)
        return replace(result, stdout="", stderr="")

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

    def open_ahead(self) -> None:  # noqa: B027 - optional hook
        """Open the connection the first operation needs, ahead of it, while this machine
        does other work (the build); called from a thread of its own, it never raises: a
        failure is what that first operation gets. Nothing to open here by default."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default backend holds none."""
