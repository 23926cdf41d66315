"""What one deploy or rollback shares between its parts: the environment, the targets, the
release, the lock token, and the few things every part does the same way — report an event,
run an operation on a target, work on targets in parallel, word a result without secrets.

The parts that use it: ``fleet_lock`` (the locks), ``step_execution`` (steps on targets),
``records`` (the release log and cleanup), ``recovery`` (what a failure undoes) and ``runner``
(the order of it all)."""

from __future__ import annotations

import contextlib
import enum
import getpass
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from deploylib import fleet
from deploylib.commands import Command, Operation, Result
from deploylib.config import Environment
from deploylib.fleet import Target
from deploylib.remote import lock as remote_lock
from deploylib.remote.layout import Layout
from deploylib.reporting import Event, Reporter
from deploylib.secrets import Redactor
from deploylib.whereabouts import Whereabouts

Clock = Callable[[], datetime]

#: deploylib's own commands whose output is its state, not something to show
QUIET_COMMANDS = frozenset({"lock", "read state", "record", "record slots", "unlock"})

#: the longest line an ``output`` event carries; longer ones are cut in pieces
LINE_LIMIT = 4000


class OutputLines:
    """A command's output, as pieces of any size per stream, handed on a whole line at a time
    (``close`` hands on what is left without its newline). A line longer than ``LINE_LIMIT``
    goes in pieces, never cut inside a secret of ``redactor``: each piece is masked alone, so a
    secret split in two would be shown."""

    def __init__(
        self, on_line: Callable[[str, str], None], redactor: Redactor | None = None
    ) -> None:
        self.on_line = on_line
        self._redactor = redactor
        self._partial: dict[str, str] = {}

    def feed(self, stream: str, text: str) -> None:
        if not text:
            return
        pending = self._partial.pop(stream, "") + text
        *whole, rest = pending.split("\n")
        for line in whole:
            self._hand_on(stream, line)
        # kept back: as much as the longest secret, which may go on in the next piece
        hold = self._redactor.longest() if self._redactor else 0
        while len(rest) > LINE_LIMIT + hold:
            cut = self._cut(rest)
            self.on_line(stream, rest[:cut])
            rest = rest[cut:]
        if rest:
            self._partial[stream] = rest

    def close(self) -> None:
        for stream, rest in list(self._partial.items()):
            self._hand_on(stream, rest)
        self._partial.clear()

    def _hand_on(self, stream: str, line: str) -> None:
        line = line.rstrip("\r")
        while len(line) > LINE_LIMIT:
            cut = self._cut(line)
            self.on_line(stream, line[:cut])
            line = line[cut:]
        self.on_line(stream, line)

    def _cut(self, text: str) -> int:
        """Where a piece of ``text`` ends: ``LINE_LIMIT``, or nearer, outside every secret."""
        return self._redactor.safe_cut(text, LINE_LIMIT) if self._redactor else LINE_LIMIT


class Phase(enum.Enum):
    """How far a run got: what a failure has to undo."""

    VALIDATE = "validate"  # nothing has run
    BUILD = "build"  # local steps ran; no target was contacted
    LOCK = "lock"  # targets contacted, locked and read; nothing changed on them
    PREPARE = "prepare"  # the new release is being made; nothing live changed
    SWITCH = "switch"  # targets go live batch by batch
    RECORD = "record"  # every target is live and verified


@dataclass
class Run:
    """The state of one run, and the ways its parts act on targets and report."""

    env: Environment
    reporter: Reporter
    clock: Clock
    #: how many targets are worked on at once
    parallel: int
    revision: str
    #: a dry run: commands are printed, nothing runs; every event says so
    dry: bool = False
    release: str = ""
    #: a rollback's release for each target that moves (its targets may go to several)
    moves: dict[str, str] = field(default_factory=dict)
    artifact: str = ""
    #: bytes a release of the artifact needs on a target (0: unknown)
    artifact_bytes: int = 0
    #: its sha256, which every target checks what it received against ("": not built)
    artifact_digest: str = ""
    #: the lock's state read brings each target's live manifest (a push that sends deltas)
    reads_manifests: bool = False
    #: the pipeline's ``build(image=...)`` template ("": the artifact is a tarball)
    image: str = ""
    #: the digest the registry gave the deploy's image, once pushed
    image_digest: str = ""
    #: the deploy's image reference, once pushed (for the release log)
    image_ref: str = ""
    #: the token of this run's locks
    lock_token: str = ""
    targets: list[Target] = field(default_factory=list)
    #: targets left out of a rollback because they could not be reached
    unreachable: list[Target] = field(default_factory=list)
    #: the migration state the deploy's ``migrate(schema=...)`` read, for the release log
    schema: tuple[str, ...] | None = None
    #: targets taken out of the load balancer (``drain``) and not yet put back
    drained: list[Target] = field(default_factory=list)
    #: the checks that passed on the new release, for the final message
    verified: list[str] = field(default_factory=list)
    #: report each command's output as it arrives (``--verbose``)
    output_live: bool = False
    #: report each command's output once it ended (the deploy's log file)
    output_kept: bool = False
    #: set on Ctrl-C: health checks stop retrying
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: who deploys (``repository.deployer``), recorded in the release log
    user: str = field(default_factory=getpass.getuser)
    #: when the run started (``time.monotonic``), for the duration the release log records
    started: float = field(default_factory=time.monotonic)
    controller_name: str = field(default_factory=socket.gethostname)
    _reporter_failed: bool = False

    @property
    def layout(self) -> Layout:
        return Layout(self.env.deploy_to)

    def emit(
        self,
        kind: str,
        message: str = "",
        *,
        host: str | None = None,
        step: str | None = None,
        data: dict[str, object] | None = None,
    ) -> None:
        if self.dry:
            data = {**(data or {}), "dry_run": True}
        try:
            self.reporter.emit(Event(kind, message, host, step, data or {}))
        except Exception as exc:  # a reporter must never stop a put-back or an unlock
            if not self._reporter_failed:
                self._reporter_failed = True
                say(f"deploylib: could not report ({exc.__class__.__name__}: {exc}); going on\n")

    def execute(self, target: Target, op: Operation, step: str) -> Result:
        """Run ``op`` on ``target``, reported as part of ``step``; a backend's note becomes a
        warning, and a guard's refusal marks the target's lock lost.

        A command's output is reported too, a line an ``output`` event, when a reporter wants
        it: as it arrives (``output_live``: ``--verbose``), or once the command ended
        (``output_kept``: the deploy's log file) — deploylib's own state reads excepted."""
        self.emit("operation", op.line, host=target.name, step=step)
        shown = isinstance(op, Command) and op.description not in QUIET_COMMANDS
        if shown and isinstance(op, Command) and (self.output_live or op.progress):
            result = self._streamed(target, op, step)
        else:
            result = target.backend.execute(op)
            if shown and self.output_kept:
                mark = op.moved_mark if isinstance(op, Command) else ""

                def report(stream: str, line: str) -> None:
                    if not (mark and line == mark):  # the switch's own line, not output
                        self._output(target, step, stream, line)

                lines = OutputLines(report, self.env.redactor)
                lines.feed("stdout", result.stdout)
                lines.feed("stderr", result.stderr)
                lines.close()
        self.warn_of(result, target, step)
        self.note_lock_loss(target, result)
        return result

    def _streamed(self, target: Target, command: Command, step: str) -> Result:
        """``command`` with its output reported line by line as it arrives (and its progress
        lines, for one that has them), and kept for its result as ``run`` keeps it."""
        kept: dict[str, list[str]] = {"stdout": [], "stderr": []}
        output = self.output_live or self.output_kept

        def each(stream: str, line: str) -> None:
            if output and not (command.moved_mark and line == command.moved_mark):
                self._output(target, step, stream, line)
            if command.progress and stream == "stdout" and line.strip():
                self.emit("progress", line, host=target.name, step=step)

        lines = OutputLines(each, self.env.redactor)

        def sink(stream: str, text: str) -> None:
            kept[stream].append(text)
            lines.feed(stream, text)

        result = target.backend.stream(command, sink)
        lines.close()
        return replace(
            result,
            stdout="".join(kept["stdout"]) + result.stdout,
            stderr="".join(kept["stderr"]) + result.stderr,
        )

    def _output(self, target: Target, step: str, stream: str, line: str) -> None:
        self.emit("output", line, host=target.name, step=step, data={"stream": stream})

    def warn_of(self, result: Result, target: Target, step: str) -> None:
        """A backend's note about an operation (a background process holding its output)."""
        if result.note:
            self.emit("warning", self.redact(result.note), host=target.name, step=step)

    @staticmethod
    def note_lock_loss(target: Target, result: Result) -> None:
        if (
            result.exit_code == remote_lock.LOCK_LOST_EXIT
            and "no longer this deploy's" in result.stderr
        ):
            target.lock_gone()

    def each(
        self, work: Callable[[Target], None], targets: Iterable[Target]
    ) -> dict[str, BaseException]:
        """``work`` on every target, ``parallel`` at once; the errors by target name."""
        return fleet.run_parallel(work, targets, self.parallel, on_interrupt=self.cancelled.set)

    def ending(self, outcome: str, exit_code: int = 0) -> dict[str, Any]:
        """What a run's last event says of it besides where the targets are: its outcome,
        exit code and duration."""
        seconds = round(time.monotonic() - self.started, 3)
        return {"outcome": outcome, "exit_code": exit_code, "seconds": seconds}

    def placement(self) -> Whereabouts:
        return fleet.placement(self.targets, self.unreachable, self.release)

    def redact(self, text: str) -> str:
        return self.env.redactor.redact(text)

    def summary(self, result: Result, limit: int = 2000) -> str:
        return result.summary(limit, redact=self.redact)

    def locked(self) -> list[Target]:
        """The targets this run may still change (it holds their lock)."""
        return [t for t in self.targets if t.locked]


def say(text: str) -> None:
    """Write to stderr at once, taking no lock (safe in a signal handler)."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace"))
