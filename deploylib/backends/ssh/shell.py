"""What the remote shell runs around a command: the prelude that reads the command's variables
from stdin (so secrets never reach a command line), the line that prints the shell's pid
(``RemoteShell``), and the script that stops the shell's process group when the command is
given up on."""

from __future__ import annotations

import secrets

from deploylib.backends.base import STOP_GRACE
from deploylib.stdin_env import ENV_PRELUDE, env_line

__all__ = ["ENV_PRELUDE", "STOP_GRACE", "RemoteShell", "env_line", "stop_group_script"]

#: how long an aborted command's pid line is waited for (it is the first thing its shell prints)
PID_WAIT = 3.0
#: how far into stderr the pid line is looked for (a shell's start-up may print before it)
PID_SEARCH = 1 << 16


def stop_group_script(pid: int) -> str:
    """Shell that stops process group ``pid``: TERM, up to ``STOP_GRACE`` s, then KILL."""
    group = f"-{int(pid)}"
    tries = int(STOP_GRACE * 10)
    return (
        f"kill -s TERM -- {group} 2>/dev/null; i=0; "
        f"while kill -s 0 -- {group} 2>/dev/null && [ $i -lt {tries} ]; do "
        "sleep 0.1; i=$((i + 1)); done; "
        f"kill -s KILL -- {group} 2>/dev/null; true"
    )


class RemoteShell:
    """What is known of a command's remote shell: its pid (its process group: sshd starts every
    session's shell in a session of its own), once the line ``prelude`` prints arrived on
    stderr. The line carries a random mark, is looked for wherever it lands among what the
    shell's start-up printed, and is taken out of the command's stderr."""

    def __init__(self) -> None:
        self.mark = f"@@deploylib-pid-{secrets.token_hex(6)} ".encode()
        self.pid: int | None = None
        #: its process group was stopped already
        self.stopped = False
        self.stderr: list[bytes] = []
        self._looking = True

    @property
    def looking(self) -> bool:
        """The pid line may still be in what stderr brings: hold stderr back from the user."""
        return self._looking

    @property
    def prelude(self) -> str:
        return f"printf '{self.mark.decode()}%s\\n' \"$$\" >&2; "

    def take_pid(self) -> None:
        """Move the pid line out of ``stderr`` into ``pid``."""
        if not self._looking or not self.stderr:
            return
        text = b"".join(self.stderr)
        start = text.find(self.mark)
        if start < 0:
            self._looking = len(text) < PID_SEARCH
            return
        end = text.find(b"\n", start)
        if end < 0:
            return  # the rest of the line is on its way
        self._looking = False
        number = text[start + len(self.mark) : end].strip()
        if number.isdigit():
            self.pid = int(number)
        rest = text[:start] + text[end + 1 :]
        self.stderr[:] = [rest] if rest else []
