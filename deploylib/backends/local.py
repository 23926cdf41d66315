"""Run operations on this machine through Invoke."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import CommandTimedOut
from invoke.runners import Local

from deploylib.backends.base import Backend
from deploylib.commands import Command, Result, Upload
from deploylib.hosts import LOCAL, Host
from deploylib.secrets import reveal


class _DeployLocal(Local):
    """Invoke's local runner, changed where a deploy needs it.

    * stdin is fed in blocks: Invoke reads a stream without a terminal one byte per 10 ms,
      which makes a 200-byte stdin cost two seconds.
    * each command runs in a process group of its own, and Ctrl-C or a timeout stops that whole
      group (Invoke would only write ``\\x03`` to stdin, which a ``sleep`` never reads), then
      the interrupt goes on up to the runner, which cleans up.
    """

    def read_our_stdin(self, input_: IO[str]) -> str | None:
        if isinstance(input_, io.StringIO):
            return input_.read(1 << 16)
        return super().read_our_stdin(input_)

    #: the backend whose abort() may stop this runner's process (set per backend)
    running: set[subprocess.Popen[bytes]] | None = None

    def start(self, command: str, shell: str, env: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [shell, "-c", command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        if self.running is not None:
            self.running.add(self.process)

    def kill(self) -> None:
        _signal_group(self.process.pid, signal.SIGKILL)

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        _signal_group(self.process.pid, signal.SIGTERM)
        raise interrupt


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class LocalBackend(Backend):
    """This machine. Commands run in a fresh shell each, with ``env`` added to the environment."""

    def __init__(self, host: Host = LOCAL, *, default_timeout: float | None = None) -> None:
        super().__init__(host)
        self.default_timeout = default_timeout
        self._running: set[subprocess.Popen[bytes]] = set()
        runner = type("_BackendLocal", (_DeployLocal,), {"running": self._running})
        self._context = Context(config=Config(overrides={"runners": {"local": runner}}))

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
        finally:
            self._running.difference_update({p for p in self._running if p.poll() is not None})
        if result is None:  # only with disown=True, which is never used here
            return Result(1, stderr="the command left no result")
        return Result(result.exited, result.stdout, result.stderr)

    def abort(self) -> None:
        for process in list(self._running):
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)

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
