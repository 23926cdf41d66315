"""``LogFileReporter``: the whole of one deploy, rollback or dry run in a file on this machine.

Every event — each command as it runs, each line of its output, every check attempt, the
timings and the outcome — is a line of plain text, redacted like every other output (it sits
behind ``Redacting``). The file is ``<log_dir>/<UTC time, ms>-<env>-<what>-<id>.log`` (mode 0600),
written as the run goes (a crash leaves what happened until then); once the run ended, the
oldest logs beyond ``keep`` are removed. A log that cannot be written makes the reporter fail,
which ``Redacting`` turns into one warning: a deploy never fails because of its log.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from deploylib.reporting.events import Event

#: the name of a log this reporter writes
NAME = re.compile(r"\d{8}T\d{6}\.\d{3}Z-[A-Za-z0-9_-]+-(deploy|rollback|dry-run)-[0-9a-f]{6}\.log")

#: events that end a run: the log is complete once one of them is written
ENDINGS = frozenset(
    {"deploy.ok", "deploy.failed", "rollback.ok", "rollback.failed", "setup.ok", "setup.failed"}
)


class LogFileReporter:
    """Writes every event of one run to its own file in ``directory``."""

    #: commands' output is wanted, once each command ended (not streamed for it)
    wants_output = True

    def __init__(self, directory: Path, env: str, what: str, *, keep: int = 30) -> None:
        self.directory = directory
        self.keep = keep
        now = datetime.now(UTC)
        # to the millisecond: the names of one machine's logs sort by time
        stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
        safe_env = "".join(c if c.isalnum() or c in "-_" else "_" for c in env)[:64]
        self.path = directory / f"{stamp}-{safe_env}-{what}-{secrets.token_hex(3)}.log"
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self.written = False

    def emit(self, event: Event) -> None:
        line = self._line(event)
        with self._lock:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
            self.written = True
            if event.kind in ENDINGS:
                self._file.close()
                self._file = None
                self.prune()

    def prune(self) -> list[Path]:
        """Remove the oldest of deploylib's logs beyond ``keep`` (by name: they start with
        their time). Only files named as deploylib names them: a ``log_dir`` shared with other
        files (``/var/log``) loses none of them."""
        logs = sorted(
            p for p in self.directory.glob("*.log") if NAME.fullmatch(p.name) and p.is_file()
        )
        gone = [p for p in logs[: max(0, len(logs) - self.keep)] if p != self.path]
        for path in gone:
            path.unlink(missing_ok=True)
        return gone

    @staticmethod
    def _line(event: Event) -> str:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        where = " ".join(part for part in (event.host, event.step) if part)
        if event.kind == "output":
            mark = "!" if event.data.get("stream") == "stderr" else "|"
            return f"{now} {where} {mark} {event.message}\n"
        first, *more = event.message.splitlines() or [""]
        text = f"{now} {event.kind:<15} {where + ': ' if where else ''}{first}"
        data: dict[str, Any] = {k: v for k, v in event.data.items() if k != "dry_run"}
        if data:
            text += "  " + json.dumps(data, default=str, ensure_ascii=False)
        return "".join([text + "\n", *(f"    {line}\n" for line in more)])
