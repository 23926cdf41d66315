"""Commands on a host, each on a channel of its own: stdin fed in a thread while the output is
read under the command's deadline; a command that times out or is aborted (Ctrl-C) is not only
abandoned: its process group on the host is stopped (TERM, then KILL) over a second channel, so
nothing of it runs on after deploylib moved on (a put-back, the unlock, the next deploy)."""

from __future__ import annotations

import codecs
import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace

import paramiko

from deploylib.backends.base import OutputSink
from deploylib.backends.local import OUTPUT_GRACE, output_left_open_note
from deploylib.backends.ssh.connection import HostConnection
from deploylib.backends.ssh.failures import Failed
from deploylib.backends.ssh.shell import PID_WAIT, STOP_GRACE, RemoteShell, stop_group_script
from deploylib.commands import Result
from deploylib.workers import submit

UNREACHABLE = 255
INTERRUPTED = 130
TIMED_OUT = 124
CHUNK = 1 << 16
#: the longest a command's wait sleeps between looks at what only time tells (its deadline, a
#: Ctrl-C, output held open after the exit); output, an exit and a closed channel wake it at once
POLL = 0.1


class Channels:
    """The commands running on ``connection``; ``halted`` says whether the backend refuses new
    ones (Ctrl-C, until the clean-up resumes it)."""

    def __init__(self, connection: HostConnection, halted: Callable[[], bool]) -> None:
        self.connection = connection
        self.settings = connection.settings
        self._halted = halted
        self._channels: set[paramiko.Channel] = set()
        self._aborted: set[paramiko.Channel] = set()
        self._lock = threading.Lock()

    def exec(
        self,
        line: str,
        stdin: Iterator[bytes] | bytes,
        timeout: float,
        sink: OutputSink | None = None,
    ) -> Result:
        """Run ``line`` on a channel of its own. A command that times out or is aborted is not
        only abandoned: its process group on the host is stopped (TERM, then KILL), so nothing
        of it runs on after deploylib moved on (a put-back, the unlock, the next deploy).

        With ``sink``, the output goes there as it arrives (the pid line taken out first)
        instead of into the result. ``stdin`` is either its bytes, known whole, or a stream
        of them (a file's chunks)."""
        try:
            transport = self.connection.transport()
        except Failed as failed:
            return Result(UNREACHABLE, stderr=str(failed), unreachable=True, never_sent=True)
        self.connection.used = True
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=self.settings.channel_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return replace(self._lost(f"opening a channel: {exc}"), never_sent=True)
        with self._lock:
            self._channels.add(channel)
            stopping = self._halted()  # halted before this command even started: run nothing
        remote = RemoteShell()
        if stopping:
            channel.close()
            with self._lock:
                self._channels.discard(channel)
            return Result(INTERRUPTED, stderr="interrupted")
        try:
            channel.exec_command(remote.prelude + line)
            result = self._converse(channel, stdin, deadline, timeout, _Output(remote, sink))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            result = (
                Result(INTERRUPTED, stderr="interrupted")
                if channel in self._aborted
                else self._lost(str(exc))
            )
        except (
            BaseException
        ):  # Ctrl-C in this very thread (deploylib uses workers; callers may not)
            channel.close()
            if remote.pid is not None and not remote.stopped:
                self._stop_group(transport, remote.pid)
            raise
        finally:
            channel.close()
            with self._lock:
                self._channels.discard(channel)
                self._aborted.discard(channel)
        if remote.pid is not None and not remote.stopped and result.timed_out:
            self._stop_group(transport, remote.pid)
        return result

    def _stop_group(self, transport: paramiko.Transport, pid: int) -> None:
        """Stop the process group of a command that was given up on (it is the group of the
        shell sshd started, ``$$``: processes that left it on purpose, daemons started with
        ``setsid``, live on). Best effort, bounded: the host may be gone."""
        deadline = time.monotonic() + STOP_GRACE + self.settings.channel_timeout
        try:
            channel = transport.open_session(timeout=self.settings.channel_timeout)
        except (paramiko.SSHException, EOFError, OSError):
            return
        try:
            channel.exec_command(stop_group_script(pid))
            while not channel.exit_status_ready() and time.monotonic() < deadline:
                select.select([channel], [], [], 0.05)
        except (paramiko.SSHException, EOFError, OSError):
            return
        finally:
            channel.close()

    def abort(self) -> None:
        """Ctrl-C: every running command stops its process group on the host, then returns as
        interrupted (see ``_converse``); the connection stays, for the clean-up."""
        with self._lock:
            self._aborted.update(self._channels)

    def _converse(
        self,
        channel: paramiko.Channel,
        stdin: Iterator[bytes] | bytes,
        deadline: float,
        timeout: float,
        output: _Output,
    ) -> Result:
        """Feed stdin while reading stdout and stderr here, until the command exits or a
        deadline passes. A stream is fed in a thread (paramiko wakes it when the window opens);
        bytes known whole that fit in the channel's window (OpenSSH opens one of 2 MiB) go here
        and now, then EOF, without a thread: they never wait for the command. The shell's pid
        line on stderr (``RemoteShell.prelude``) goes to ``remote``, not to the result."""
        remote = output.remote
        exited_at: float | None = None
        aborted_at: float | None = None
        stop_feeding = threading.Event()
        feeder: Future[None] | None = None
        if isinstance(stdin, bytes) and len(stdin) <= channel.out_window_size:
            _feed(channel, iter([stdin] if stdin else []), deadline, stop_feeding)
        else:
            chunks = iter([stdin]) if isinstance(stdin, bytes) else stdin
            feeder = submit(lambda: _feed(channel, chunks, deadline, stop_feeding))
        try:
            while True:
                if channel in self._aborted and not channel.exit_status_ready():
                    # Ctrl-C: stop the command on the host first (its pid line may still be on
                    # its way), so nothing of it runs on after the clean-up
                    aborted_at = aborted_at or time.monotonic()
                    stop_feeding.set()
                    while channel.recv_stderr_ready():
                        output.stderr(channel.recv_stderr(CHUNK))
                    waited = time.monotonic() - aborted_at
                    if remote.pid is not None or waited > PID_WAIT or channel.closed:
                        if remote.pid is not None:
                            transport = channel.get_transport()
                            if transport is not None:
                                self._stop_group(transport, remote.pid)
                            remote.stopped = True
                        return Result(
                            INTERRUPTED, output.kept_out(), output.kept_err() + "\ninterrupted"
                        )
                if self.connection.dead:
                    message = self.connection.dead_message()
                    return Result(UNREACHABLE, output.kept_out(), message, unreachable=True)
                if time.monotonic() > deadline:
                    note = f"\ntimed out after {timeout:g} s"
                    return Result(
                        TIMED_OUT, output.kept_out(), output.kept_err() + note, timed_out=True
                    )
                busy = False
                while channel.recv_ready():
                    output.stdout(channel.recv(CHUNK))
                    busy = True
                while channel.recv_stderr_ready():
                    output.stderr(channel.recv_stderr(CHUNK))
                    busy = True
                drained = not channel.recv_ready() and not channel.recv_stderr_ready()
                finished = channel.closed or channel.eof_received
                if channel.exit_status_ready() and drained and finished:
                    return Result(channel.recv_exit_status(), output.kept_out(), output.kept_err())
                if channel.exit_status_ready() and drained:
                    # exited, but something (a background process) still holds its output
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > OUTPUT_GRACE:
                        return _left_open(channel.recv_exit_status(), output)
                if channel.closed and not channel.exit_status_ready():
                    if channel in self._aborted:
                        return Result(
                            INTERRUPTED, output.kept_out(), output.kept_err() + "\ninterrupted"
                        )
                    return self._lost("the channel closed without an exit status")
                if not busy:
                    wait = max(0.0, min(POLL, deadline - time.monotonic()))
                    if channel.eof_received:
                        # the channel's pipe stays readable after EOF: wait for the exit status
                        channel.status_event.wait(wait)
                    else:
                        select.select([channel], [], [], wait)
        finally:
            channel.close()  # wakes a feeder still waiting for window space
            if feeder is not None:
                with contextlib.suppress(TimeoutError):
                    feeder.exception(timeout=1)

    def _lost(self, detail: str) -> Result:
        if self.connection.dead:
            return Result(UNREACHABLE, stderr=self.connection.dead_message(), unreachable=True)
        return Result(UNREACHABLE, stderr=f"{self.connection.where}: {detail}", unreachable=True)


def _left_open(status: int, output: _Output) -> Result:
    """The result of a command that exited while its output was still held open."""
    note = output_left_open_note(
        status,
        "its channel is closed, so what that process writes there from now on is lost "
        "(and a write may kill it with SIGPIPE)",
    )
    return Result(status, output.kept_out(), output.kept_err(), note=note)


class _Output:
    """A command's output as it is read: kept for its result, or with a ``sink``, handed there
    as it arrives (decoded as UTF-8 across chunk boundaries). Its stderr is held back while
    the shell's pid line may still be in it, so that line never reaches the sink."""

    def __init__(self, remote: RemoteShell, sink: OutputSink | None) -> None:
        self.remote = remote
        self.sink = sink
        self.out: list[bytes] = []
        self.err: list[bytes] = remote.stderr
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("out", "err")
        }

    def stdout(self, data: bytes) -> None:
        if self.sink is None:
            self.out.append(data)
        else:
            self._hand_on("stdout", data, final=False)

    def stderr(self, data: bytes) -> None:
        self.err.append(data)
        self.remote.take_pid()
        if self.sink is not None and not self.remote.looking:
            self._pass_err(final=False)

    def kept_out(self) -> str:
        """The stdout of the result: all of it, or, when streamed, nothing (sent on now)."""
        if self.sink is not None:
            self._hand_on("stdout", b"", final=True)
        return _text(self.out)

    def kept_err(self) -> str:
        if self.sink is not None:
            self._pass_err(final=True)
        return _text(self.err)

    def _pass_err(self, *, final: bool) -> None:
        data = b"".join(self.err)
        self.err.clear()
        self._hand_on("stderr", data, final=final)

    def _hand_on(self, stream: str, data: bytes, *, final: bool) -> None:
        assert self.sink is not None
        text = self._decoders[stream[3:]].decode(data, final)
        if text:
            self.sink(stream, text)


def _feed(
    channel: paramiko.Channel, stdin: Iterator[bytes], deadline: float, stop: threading.Event
) -> None:
    """Send every chunk of stdin, then EOF; give up at the deadline, when the channel closes or
    when ``stop`` is set (an abort: what is still to send must not hold up the clean-up)."""
    channel.settimeout(0.5)
    try:
        for chunk in stdin:
            view = memoryview(chunk)
            while view:
                if channel.closed or time.monotonic() > deadline or stop.is_set():
                    return
                try:
                    sent = channel.send(view[:CHUNK])
                except TimeoutError:
                    continue
                if sent == 0:  # closed, or the remote end will read no more
                    return
                view = view[sent:]
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        return


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace")
