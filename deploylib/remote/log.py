"""The release log, ``.deploylib/releases.jsonl``: one JSON line per deploy, failure and
rollback, added by replacing the whole file (a full disk leaves it as it was)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploylib.commands import Command
from deploylib.remote import sparing
from deploylib.remote.layout import Layout, check_token
from deploylib.remote.lock import guard_for


@dataclass(frozen=True)
class LogEntry:
    """One line of ``releases.jsonl``. ``current`` is what current points to afterwards."""

    event: str  # deploy | rollback
    outcome: str  # success | failed | rolled_back
    release: str
    revision: str
    current: str | None
    previous: str | None
    user: str
    controller: str
    time: str
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "time": self.time,
            "event": self.event,
            "outcome": self.outcome,
            "release": self.release,
            "revision": self.revision,
            "current": self.current,
            "previous": self.previous,
            "user": self.user,
            "controller": self.controller,
        }
        if self.error:
            data["error"] = self.error
        data.update(self.extra)
        return data

    def as_json(self) -> str:
        # ensure_ascii: one line whatever the text holds (U+2028 and friends included)
        return json.dumps(self.as_dict(), ensure_ascii=True)


def record_command(layout: Layout, entry: LogEntry, token: str | None = None) -> Command:
    """Append one line to the release log, all or nothing: the log is copied with the new line
    to a temporary file that replaces it by rename(2). A full disk leaves the log as it was; a
    last line without its newline (from elsewhere) gets one first, so no line is glued to it."""
    q = shlex.quote
    log = q(layout.log)
    suffix = check_token(token) if token else "w"
    temporary = q(f"{layout.log}.{suffix}.tmp")
    # the new line (one line of JSON on stdin) is read and written by the shell itself
    script = (
        f"{sparing.make_dirs(layout.meta)} && "
        # a log that is not a regular file (a FIFO would block cat until the deadline) is
        # not written: the command fails at once, leaving it as it is
        f"{{ {{ [ ! -e {log} ] || {{ [ -f {log} ] && cat {log}; }}; }} && "
        # the last byte read as a line: it ends one only when it is a newline (a NUL, which
        # a command substitution would drop, is no line end either)
        f"{{ [ ! -s {log} ] || tail -c 1 {log} | IFS= read -r _ || echo; }} && "
        "__dl_line= && IFS= read -r __dl_line && printf '%s\\n' \"$__dl_line\"; "
        f"}} > {temporary} && unset __dl_line && mv -f {temporary} {log} || "
        f"{{ rm -f {temporary}; echo {q('could not write the release log ' + layout.log)} >&2; "
        "exit 1; }"
    )
    return Command(
        script,
        stdin=(entry.as_json() + "\n").encode(),
        description="record",
        guard=guard_for(layout, token),
    )
