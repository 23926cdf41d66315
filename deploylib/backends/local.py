"""Run operations on this machine through Invoke."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import CommandTimedOut

from deploylib.backends.base import Backend
from deploylib.commands import Command, Result, Upload
from deploylib.hosts import LOCAL, Host
from deploylib.secrets import reveal

class LocalBackend(Backend):
    """This machine. Commands run in a fresh shell each, with ``env`` added to the environment."""

    def __init__(self, host: Host = LOCAL, *, default_timeout: float | None = None) -> None:
        super().__init__(host)
        self.default_timeout = default_timeout
        self._context = Context()

    def run(self, command: Command) -> Result:
        stdin = command.stdin_bytes()
        env = {name: reveal(value) for name, value in command.env.items()}
        try:
            result = self._context.run(
                command.line,
                env=env,
                hide=True,
                warn=True,
                pty=False,
                echo=False,
                timeout=command.timeout or self.default_timeout,
                in_stream=io.StringIO(stdin.decode()) if stdin is not None else False,
            )
        except CommandTimedOut as exc:
            return Result(124, exc.result.stdout, exc.result.stderr, timed_out=True)
        return Result(result.exited, result.stdout, result.stderr)

    def upload(self, upload: Upload) -> Result:
        target = Path(upload.remote)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # copy to a temporary name first, so a reader never sees half a file
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            os.close(fd)
            shutil.copyfile(upload.local, temporary)
            os.chmod(temporary, upload.mode)
            os.replace(temporary, target)
        except OSError as exc:
            return Result(1, stderr=f"upload to {upload.remote}: {exc}")
        return Result(0)
