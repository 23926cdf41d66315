"""Output of a command on many hosts, as it arrives: ``exec`` and ``logs``.

Each backend hands the output of a streamed command (``Backend.stream``) to a sink as it reads
it; here every host's sink cuts it into lines and writes each one at once, as
``<host> | <line>``, stdout lines to our stdout and stderr lines to our stderr. A line is
written whole, under a lock, so lines of different hosts interleave but never mix. Every line
has the environment's secrets masked and terminal escape sequences removed (``text.printable``:
other control characters but tab are shown as ``\\xNN``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from deploylib import fleet
from deploylib.commands import Command, Result
from deploylib.fleet import Target
from deploylib.secrets import Redactor
from deploylib.text import printable

#: the exit status of a host that could not be reached, or stopped answering (as ssh's)
UNREACHABLE = 255
#: a line longer than this is written in pieces (output that never ends a line stays bounded)
LONGEST_LINE = 1 << 16


class HostLines:
    """Writes lines of many hosts to ``out`` and ``err``, each prefixed by its host's name,
    cleaned by ``redact`` and ``printable``; ``on_line`` (if given) also gets every line,
    cleaned, without the prefix. A stream given as None is not written to."""

    def __init__(
        self,
        redact: Callable[[str], str],
        out: TextIO | None,
        err: TextIO | None,
        on_line: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._redact = redact
        #: cuts a long line where no secret is split (the redactor's, when it is one)
        self._redactor = redact if isinstance(redact, Redactor) else None
        self._streams = {"stdout": out, "stderr": err}
        self._on_line = on_line
        self._lock = threading.Lock()

    def clean(self, text: str) -> str:
        return self._redact(printable(self._redact(text)))

    def write(self, host: str, stream: str, line: str) -> None:
        """One line (without its newline) of ``host`` on ``stream``, cleaned and prefixed."""
        text = self.clean(line)
        with self._lock:
            target = self._streams[stream]
            if target is not None:
                target.write(f"{host} | {text}\n")
                target.flush()
            if self._on_line is not None:
                self._on_line(host, stream, text)

    def say(self, host: str, message: str) -> None:
        """deploylib's own word about ``host`` (unreachable, timed out), on stderr."""
        for line in message.strip().splitlines() or [""]:
            self.write(host, "stderr", f"deploylib: {line}")

    def holdback(self) -> int:
        """How much longer than ``LONGEST_LINE`` a line is kept before it is cut: the longest
        secret, so a secret that straddles the cut is whole in the text cut."""
        return self._redactor.longest() if self._redactor is not None else 0

    def cut(self, text: str, at: int) -> int:
        """Where to cut ``text`` near ``at`` without splitting a secret in two."""
        return self._redactor.safe_cut(text, at) if self._redactor is not None else at

    def sink(self, host: str) -> HostSink:
        return HostSink(self, host)


class HostSink:
    """One host's output cut into lines; ``flush`` writes what is left of a last line."""

    def __init__(self, lines: HostLines, host: str) -> None:
        self._lines = lines
        self._host = host
        self._pending = {"stdout": "", "stderr": ""}

    def __call__(self, stream: str, text: str) -> None:
        pending = self._pending[stream] + text
        *complete, rest = pending.split("\n")
        for line in complete:
            self._lines.write(self._host, stream, line.removesuffix("\r"))
        hold = self._lines.holdback()
        while len(rest) > LONGEST_LINE + hold:
            # never through a secret: each piece is masked alone
            cut = self._lines.cut(rest, LONGEST_LINE)
            self._lines.write(self._host, stream, rest[:cut])
            rest = rest[cut:]
        self._pending[stream] = rest

    def flush(self) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self._lines.write(self._host, stream, rest)
            self._pending[stream] = ""


@dataclass
class Streamed:
    """How a streamed command went on every host."""

    #: each host's result, by host name, in the order of the targets
    results: dict[str, Result] = field(default_factory=dict)
    #: Ctrl-C stopped it
    interrupted: bool = False
    #: the hosts whose command was still running when Ctrl-C stopped it
    stopped: frozenset[str] = frozenset()

    def exit_status(self) -> int:
        """The worst host's exit status, the hosts Ctrl-C stopped left out: 0 when every
        one is 0, else the highest. A host that could not be reached counts as
        ``UNREACHABLE`` (255); a command killed by a signal as 128+N, as shells say it."""
        statuses = [
            self.status_of(result)
            for name, result in self.results.items()
            if name not in self.stopped
        ]
        return max(statuses, default=0)

    @staticmethod
    def status_of(result: Result) -> int:
        """One host's exit status as a shell would say it: 255 for a host that could not be
        reached, 128+N for a command killed by signal N."""
        if result.unreachable:
            return UNREACHABLE
        return 128 - result.exit_code if result.exit_code < 0 else result.exit_code


def run_streamed(
    targets: Sequence[Target], command: Command, lines: HostLines, parallel: int
) -> Streamed:
    """``command`` on every target, ``parallel`` at a time, its output written by ``lines``
    as it arrives. Ctrl-C stops the command on every host (``fleet.run_parallel``: the
    backends abort it, on SSH hosts its process group is stopped) and is not raised on: the
    result says so, and which hosts it stopped."""
    results: dict[str, Result] = {}
    finished: set[str] = set()
    guard = threading.Lock()

    def work(target: Target) -> None:
        sink = lines.sink(target.name)
        try:
            result = target.backend.stream(command, sink)
        finally:
            sink.flush()
        with guard:
            results[target.name] = result
        if result.unreachable or result.timed_out:
            lines.say(target.name, result.stderr)

    def interrupted() -> None:
        with guard:
            finished.update(results)

    try:
        errors = fleet.run_parallel(work, targets, parallel, on_interrupt=interrupted)
    except KeyboardInterrupt:
        ordered = {t.name: results[t.name] for t in targets if t.name in results}
        stopped = frozenset(t.name for t in targets if t.name not in finished)
        return Streamed(ordered, interrupted=True, stopped=stopped)
    for name, error in errors.items():
        results[name] = Result(1, stderr=str(error))
        lines.say(name, f"{error.__class__.__name__}: {error}")
    return Streamed({t.name: results[t.name] for t in targets})
