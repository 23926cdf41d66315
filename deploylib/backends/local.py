"""Run operations on this machine through Invoke."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, Any

from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import CommandTimedOut
from invoke.runners import Local
from invoke.runners import Result as InvokeResult

from deploylib.backends.base import STOP_GRACE, Backend, OutputSink
from deploylib.commands import Command, Result, Upload
from deploylib.digests import file_chunks
from deploylib.hosts import LOCAL, Host
from deploylib.secrets import reveal

#: how long a command's output is awaited once it has exited (local and SSH backends): a
#: background process the command started may hold the output open for as long as it runs
OUTPUT_GRACE = 2.0


def output_left_open_note(exit_code: int | None, afterwards: str) -> str:
    """The warning for a command that exited while something still held its output open;
    ``afterwards`` says what becomes of that output now."""
    return (
        f"the command exited (status {exit_code}) but its output stayed open: a background "
        "process it started still holds its stdout/stderr. deploylib stopped waiting after "
        f"{OUTPUT_GRACE:g} s; {afterwards}. Redirect the background process's output, e.g. "
        "`nohup srv >/dev/null 2>&1 </dev/null &` (or `>>log/srv.log 2>&1 </dev/null &`)"
    )


class _SinkStream:
    """What Invoke writes a streamed command's output to: handed to a sink as it arrives."""

    def __init__(self, sink: OutputSink, name: str) -> None:
        self.sink = sink
        self.name = name

    def write(self, text: str) -> int:
        self.sink(self.name, text)
        return len(text)

    def flush(self) -> None:
        pass


class _LocalResult(InvokeResult):
    """Invoke's result, and whether the command's output was still held open when it exited."""

    output_left_open = False


class _ByteFeed(io.StringIO):
    """A command's stdin for Invoke: its bytes, then a file's, each byte carried as one latin-1
    character (Invoke hands stdin on as text; ``_DeployLocal`` encodes it back the same way),
    so binary data (an artifact) goes through unchanged."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks

    def read(self, size: int | None = -1) -> str:
        return next(self._chunks, b"").decode("latin-1")


class _DeployLocal(Local):
    """Invoke's local runner, changed where a deploy needs it.

    * stdin is fed in blocks, as bytes (``_ByteFeed``): Invoke reads a stream without a
      terminal one byte per 10 ms, which makes a 200-byte stdin cost two seconds.
    * each command runs in a process group of its own, and Ctrl-C or a timeout stops that whole
      group (Invoke would only write ``\\x03`` to stdin, which a ``sleep`` never reads), then
      the interrupt goes on up to the runner, which cleans up.
    * once the command has exited, its output is awaited for ``OUTPUT_GRACE`` seconds only
      (Invoke would wait for the end of its pipes, which a background process started by the
      command, e.g. ``nohup srv &``, holds for as long as it runs). Past that the result has
      the output so far and ``output_left_open``; the pipes are still drained (and what comes
      through is dropped), so a background process writing to them is never blocked or killed.
    """

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._deadline_passed = False
        self._left_open = False
        self._awaited = False
        self._abandoned = threading.Event()

    def _thread_join_timeout(self, target: Callable[..., Any]) -> int | None:
        # Invoke's _finish joins the IO threads after the process exited, with this timeout
        if target == self.handle_stdin:
            return None  # ends as soon as program_finished is set
        self._await_output()
        return 0

    def _await_output(self) -> None:
        """Wait (once) up to ``OUTPUT_GRACE`` s for the stdout and stderr readers to end."""
        if self._awaited:
            return
        self._awaited = True
        end = time.monotonic() + OUTPUT_GRACE
        readers = [t for target, t in self.threads.items() if target != self.handle_stdin]
        for reader in readers:
            reader.join(max(0.0, end - time.monotonic()))
        if any(reader.is_alive() for reader in readers):
            self._left_open = True
            self._abandoned.set()

    def read_proc_output(self, reader: Callable[..., Any]) -> Generator[str, None, None]:
        """The stream's text, decoded across the reads: Invoke decodes each read of 1,000
        bytes alone, so a character cut by a read became two replacement characters (and a
        secret holding it was no longer masked)."""
        decoder = codecs.getincrementaldecoder(self.encoding)("replace")
        while True:
            data = reader(self.read_chunk_size)
            text = decoder.decode(data or b"", final=not data)
            if text and not self._abandoned.is_set():
                yield text
            if not data:
                return

    def generate_result(self, **kwargs: Any) -> InvokeResult:
        result = _LocalResult(**kwargs)
        result.output_left_open = self._left_open
        return result

    def _handle_output(
        self, buffer_: list[str], hide: bool, output: IO[str], reader: Callable[..., Any]
    ) -> None:
        if isinstance(output, _SinkStream):  # streamed: handed on, not kept (``tail -F``)
            for data in self.read_proc_output(reader):
                output.write(data)
            return
        super()._handle_output(buffer_, hide, output, reader)

    def read_our_stdin(self, input_: IO[str]) -> str | None:
        if isinstance(input_, _ByteFeed):
            return input_.read()
        return super().read_our_stdin(input_)

    def write_proc_stdin(self, data: str) -> None:
        self._write_proc_stdin(data.encode("latin-1"))

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
        """A command past its deadline: TERM to its process group (its shell's traps run),
        then KILL to whatever is left of it ``STOP_GRACE`` seconds later. It returns at once;
        Invoke calls it from its timer only, so it also marks the command as timed out."""
        self._deadline_passed = True  # first: the process may end before the timer does
        pid = self.process.pid
        _signal_group(pid, signal.SIGTERM)
        later = threading.Timer(STOP_GRACE, _signal_group, (pid, signal.SIGKILL))
        later.daemon = True
        later.start()

    @property
    def timed_out(self) -> bool:
        """Invoke tells a timeout by its timer having ended; the command killed by the timer
        may end before the timer's thread does, and would then pass for one killed by TERM."""
        return self._deadline_passed or bool(super().timed_out)

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        _signal_group(self.process.pid, signal.SIGTERM)
        raise interrupt


def _note(result: InvokeResult) -> str:
    if isinstance(result, _LocalResult) and result.output_left_open:
        return output_left_open_note(result.exited, "what it writes there from now on is dropped")
    return ""


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
        # lazy: no system or user Invoke config files (~/.invoke.yaml's run.dry, hide, pty...)
        # change how deploylib runs commands
        config = Config(overrides={"runners": {"local": runner}}, lazy=True)
        self._context = Context(config=config)

    def run(self, command: Command) -> Result:
        return self._run(command, None)

    def _stream(self, command: Command, sink: OutputSink) -> Result:
        result = self._run(command, sink)
        if result.timed_out:
            return Result(
                124,
                stderr=f"timed out after {command.timeout or self.default_timeout:g} s",
                timed_out=True,
            )
        return Result(result.exit_code, note=result.note)

    def _run(self, command: Command, sink: OutputSink | None) -> Result:
        stdin = command.stdin_bytes()
        chunks: Iterator[bytes] = iter([stdin] if stdin else [])
        if command.stdin_file is not None:
            chunks = chain(chunks, file_chunks(command.stdin_file))
        feeds = stdin is not None or command.stdin_file is not None
        env = {name: reveal(value) for name, value in command.env.items()}
        streams = (
            {"out_stream": _SinkStream(sink, "stdout"), "err_stream": _SinkStream(sink, "stderr")}
            if sink is not None
            else {}
        )
        try:
            result = self._context.run(
                command.full_line,
                env=env,
                hide=True,
                warn=True,
                pty=False,
                echo=False,
                timeout=command.timeout or self.default_timeout,
                in_stream=_ByteFeed(chunks) if feeds else False,
                **streams,
            )
        except CommandTimedOut as exc:
            return Result(
                124, exc.result.stdout, exc.result.stderr, timed_out=True, note=_note(exc.result)
            )
        finally:
            self._running.difference_update({p for p in self._running if p.poll() is not None})
        if result is None:  # only with disown=True, which is never used here
            return Result(1, stderr="the command left no result")
        return Result(result.exited, result.stdout, result.stderr, note=_note(result))

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
