"""Operations as data: what a step asks a backend to do on one target.

Three kinds exist: ``Command`` (a shell script run on the target), ``Upload`` (a local file
copied to the target) and ``Probe`` (an HTTP, TCP or Prometheus request from the controller).
Steps build them; backends execute them; the printer backend prints them. Quoting happens here
and in ``placeholders`` only, never at a call site.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploylib.secrets import Secret


@dataclass(frozen=True)
class Command:
    """A shell script to run on one target.

    ``env`` is handed to the process environment (never the command line); ``stdin`` is fed to
    the script's standard input, then the local file ``stdin_file``, streamed (the artifact, into
    the script that unpacks it). A ``Secret`` in either never prints.
    """

    script: str
    cwd: str | None = None
    env: Mapping[str, str | Secret] = field(default_factory=dict)
    stdin: bytes | Secret | None = None
    stdin_file: Path | None = None
    timeout: float | None = None
    description: str = ""
    #: shell run first, which exits the shell unless the command may run (the deploy lock's
    #: token check); not part of ``line``, which is what the command does
    guard: str = ""
    #: each line of its standard output says how a long wait goes (a swarm update's tasks):
    #: reported as it arrives, as a ``progress`` event, with or without ``--verbose``
    progress: bool = False
    #: a switch with more after it in one command (its restart): the line the script prints on
    #: stdout once ``current`` moved, so its result says whether it did whatever came after
    #: (``took_mark`` takes the line out of the output)
    moved_mark: str = ""
    #: run instead when this command exits with ``FALLBACK_EXIT``, which it does only having
    #: changed nothing (a delta push that found the live release's files not as listed)
    fallback: Command | None = None
    #: the commands whose lines this one's script runs in order, in one shell (a switch and its
    #: restart): the fake backend answers each as it would on its own
    parts: tuple[Command, ...] = ()

    @classmethod
    def of(cls, *argv: str, **kwargs: object) -> Command:
        """A command from argv words, each quoted."""
        return cls(shlex.join(argv), **kwargs)  # type: ignore[arg-type]

    @property
    def line(self) -> str:
        """The shell line this command runs: the script, behind a ``cd`` when it has a cwd."""
        if not self.cwd:
            return self.script
        cd = f"cd {shlex.quote(self.cwd)}"
        if "\n" in self.script:
            return f"{cd} && {{\n{self.script.rstrip()}\n}}"
        return f"{cd} && {self.script}"

    @property
    def full_line(self) -> str:
        """What a backend runs: the guard, then ``line``."""
        return f"{self.guard}; {self.line}" if self.guard else self.line

    def stdin_bytes(self) -> bytes | None:
        if isinstance(self.stdin, Secret):
            # bytes that are no UTF-8 (file names in a delta's lists) come back as they were
            return self.stdin.reveal().encode("utf-8", "surrogateescape")
        return self.stdin

    def describe_stdin(self) -> str:
        then = f" then {self.stdin_file}" if self.stdin_file is not None else ""
        if self.stdin is None:
            return f"<stdin: {self.stdin_file}>" if self.stdin_file is not None else ""
        if isinstance(self.stdin, Secret):
            return f"<stdin: *** (secret)>{then}"
        return f"<stdin: {len(self.stdin)} bytes>{then}"


@dataclass(frozen=True)
class Upload:
    """Copy ``local`` to ``remote`` on the target, with ``mode``.

    ``unless``: a shell test run on the target first; when it passes, what the file is for is
    already there and nothing is sent (e.g. an environment made from it earlier)."""

    local: Path
    remote: str
    mode: int = 0o644
    description: str = ""
    timeout: float | None = None
    unless: str = ""

    @property
    def line(self) -> str:
        local, remote = shlex.quote(str(self.local)), shlex.quote(self.remote)
        unless = f" unless {self.unless}" if self.unless else ""
        return f"upload {local} -> {remote} (mode {self.mode:o}){unless}"


@dataclass(frozen=True)
class Probe:
    """A request made from the controller: an HTTP GET or a TCP connect to a target, or an
    instant query of a Prometheus server (``url`` its base URL) whose every sample must lie
    within ``minimum``/``maximum``; or a ``file`` on the controller itself (``path``: there, a
    regular file, not empty), looked at in this process: the build's artifact."""

    kind: str  # "http" | "tcp" | "prometheus" | "file"
    url: str = ""
    host: str = ""
    port: int = 0
    status: int | None = 200
    contains: str | None = None
    timeout: float = 5.0
    description: str = ""
    #: a ``prometheus`` probe's PromQL query, its bounds, and whether an empty result passes
    #: (``on_no_data``: ``"fail"`` or ``"pass"``)
    query: str = ""
    maximum: float | None = None
    minimum: float | None = None
    on_no_data: str = "fail"
    path: str = ""
    #: masks the secrets in what the server answered, before a message cuts it or puts it on
    #: one line (a secret cut in two, or its blanks run together, would no longer be masked)
    redact: Callable[[str], str] = field(default=str, compare=False, repr=False)

    @property
    def line(self) -> str:
        if self.kind == "file":
            return shlex.join(["test", "-s", self.path])  # what it checks, as a command would
        if self.kind == "http":
            expect = f" expect {self.status}" if self.status else ""
            if self.contains:
                expect += f" containing {self.contains!r}"
            return f"GET {self.url}{expect}"
        if self.kind == "prometheus":
            no_data = " (no data passes)" if self.on_no_data == "pass" else ""
            return f"prometheus {self.url} {one_line(self.query)} {self.bounds}{no_data}"
        return f"connect tcp {self.host}:{self.port}"

    @property
    def bounds(self) -> str:
        """A ``prometheus`` probe's bounds as written: ``>= 1``, ``<= 0.01``, or both."""
        parts = [
            f"{op} {number(value)}"
            for op, value in ((">=", self.minimum), ("<=", self.maximum))
            if value is not None
        ]
        return " and ".join(parts)


def number(value: float) -> str:
    """A bound or a sample as a person writes it: ``0.01``, ``5``, ``1e-09``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)).removesuffix(".0")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space: a query on a line."""
    return " ".join(text.split())


Operation = Command | Upload | Probe


#: the exit status of a command that asks for its ``fallback`` to run instead
FALLBACK_EXIT = 79


def took_mark(result: Result, mark: str) -> tuple[bool, Result]:
    """Whether ``result``'s stdout has the line ``mark`` (``Command.moved_mark``), and the
    result without that line."""
    lines = result.stdout.split("\n")
    if mark not in lines:
        return False, result
    lines.remove(mark)
    return True, replace(result, stdout="\n".join(lines))


#: how many of a failing command's last lines its error message shows
SUMMARY_LINES = 20


@dataclass(frozen=True)
class Result:
    """What one operation gave back. ``exit_code`` is 0 on success."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    #: the host could not be reached (or stopped answering): whether the command ran is unknown
    unreachable: bool = False
    #: unreachable before the command was sent (no connection, no channel): none of it ran
    never_sent: bool = False
    #: a warning about how the operation went, for the user (empty: nothing to say), e.g. that
    #: a background process it started still held its output when it exited
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self, limit: int = 2000, redact: Callable[[str], str] | None = None) -> str:
        """The last ``SUMMARY_LINES`` lines of the captured output (at most ``limit``
        characters), for error messages.

        With ``redact``, the whole output is redacted before it is cut, so a secret that
        straddles the cut is masked whole rather than shown in part."""
        text = self.stderr if self.stderr.strip() else self.stdout
        if redact is not None:
            text = redact(text)  # before anything is cut or stripped off
        # lines end at \n only: a \r inside one is shown escaped, never cut at
        text = "\n".join(text.strip().split("\n")[-SUMMARY_LINES:])[-limit:]
        if self.timed_out:
            return "timed out" + (f": {text}" if text else "")
        return f"exit {self.exit_code}" + (f": {text}" if text else "")
