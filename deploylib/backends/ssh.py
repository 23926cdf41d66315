"""Run operations on an SSH host: one Fabric connection per host, reused for everything.

Every remote call has a deadline:

* connecting: ``connect_timeout`` for TCP, the banner, the key exchange and authentication,
  retried (with jitter, a few times) only while nothing has run on the host yet;
* jump hosts (``ProxyJump`` in ~/.ssh/config): each hop is connected here with the same
  deadlines, key file and host-key policy as the host, and the next hop is reached through a
  ``direct-tcpip`` channel opened within ``channel_timeout``;
* opening a channel: ``channel_timeout`` (paramiko would wait an hour);
* a command: its own timeout, else the environment's ``command_timeout``; once its exit status
  has arrived, its output is awaited ``OUTPUT_GRACE`` seconds more (a background process it
  started may hold the output open), then the result comes back with a ``note``;
* a dead link: keepalive requests that expect a reply go out every ``alive_interval`` seconds;
  with no reply for ``alive_interval * alive_count_max`` seconds the connection is closed and
  every operation on it fails at once, as OpenSSH's ServerAliveInterval/ServerAliveCountMax do.

Secrets never reach a command line: the variables of a command travel through the channel's
stdin, read by a fixed prelude, ahead of the command's own stdin. Host keys — of the host and
of every jump host — are checked against ``known_hosts``; an unknown key is refused unless
``accept_new`` is set, a changed key always. User and port: the host entry's, else the
environment's ``[ssh]`` ones when set, else ~/.ssh/config's, else your user name and 22.
paramiko's own log records are kept off the terminal; the error messages say what happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from deploylib.backends.base import Backend
from deploylib.backends.local import OUTPUT_GRACE, output_left_open_note
from deploylib.commands import Command, Result, Upload
from deploylib.config import SSHSettings
from deploylib.envfile import printf_escaped
from deploylib.hosts import Host
from deploylib.secrets import reveal

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
UNREACHABLE = 255
INTERRUPTED = 130
TIMED_OUT = 124
CHUNK = 1 << 16

# Reads "export NAME=..." lines from stdin up to an empty line, then runs the command; the
# rest of stdin is the command's own. `read` takes one byte at a time from a pipe, so it never
# swallows what the command should read.
ENV_PRELUDE = 'while IFS= read -r __dl && [ -n "$__dl" ]; do eval "$__dl"; done; '


def env_line(name: str, value: str) -> str:
    """One line of shell that exports ``name``; values with newlines are escaped for printf."""
    if not ENV_NAME.fullmatch(name):
        raise ValueError(f"not an environment variable name: {name!r}")
    if "\n" not in value:
        return f"export {name}={shlex.quote(value)}"
    # the trailing x survives command substitution's trimming of final newlines
    return f'__dlv="$(printf \'%bx\' {printf_escaped(value)})"; export {name}="${{__dlv%x}}"'


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """``accept_new = true``: remember an unknown key in known_hosts (a changed key still fails)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.known_hosts.open("a", encoding="ascii") as file:
            file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class AliveMonitor:
    """Keepalives that expect a reply, and a watchdog that closes a silent connection."""

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int) -> None:
        self.transport = transport
        self.interval = interval
        self.limit = interval * count_max
        self.last_reply = time.monotonic()
        self.dead = False
        self._stop = threading.Event()
        for target in (self._ping, self._watch):
            threading.Thread(target=target, daemon=True, name="deploylib-keepalive").start()

    def _ping(self) -> None:
        while not self._stop.is_set() and self.transport.is_active():
            # returns when the server answers (OpenSSH answers "failure": any answer will do)
            # or when the watchdog closes the transport
            self.transport.global_request("keepalive@openssh.com", wait=True)
            if not self.transport.is_active():
                return
            self.last_reply = time.monotonic()
            self._stop.wait(self.interval)

    def _watch(self) -> None:
        while not self._stop.wait(min(0.25, self.interval / 4)):
            if time.monotonic() - self.last_reply > self.limit:
                self.dead = True
                self.transport.close()
                return

    def stop(self) -> None:
        self._stop.set()


class SSHBackend(Backend):
    def __init__(
        self,
        host: Host,
        settings: SSHSettings,
        *,
        project_dir: Path,
        default_timeout: float,
    ) -> None:
        super().__init__(host)
        _quiet_paramiko()
        self.settings = settings
        self.project_dir = project_dir
        self.default_timeout = default_timeout
        # only what deploy.toml says explicitly is passed on: the rest comes from ~/.ssh/config
        # (User, Port), then the defaults (your user name, 22)
        self.user = host.user or settings.user
        self.port = host.port or (settings.port if "port" in settings.model_fields_set else None)
        self._endpoint: _Endpoint | None = None
        self._connection: Connection | None = None
        self._jumps: list[Connection] = []
        self._monitor: AliveMonitor | None = None
        self._used = False
        self._channels: set[paramiko.Channel] = set()
        self._aborted: set[paramiko.Channel] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection

    @property
    def known_hosts(self) -> Path:
        return _path(self.settings.known_hosts, self.project_dir)

    def _connect(self) -> paramiko.Transport:
        """The open transport, connecting (with retries) if there is none; raises ``_Failed``."""
        if self._connection is not None and self._connection.is_connected:
            assert self._connection.transport is not None
            return self._connection.transport
        if self._monitor is not None and self._monitor.dead:
            raise _Failed(self._dead_message())
        if self._used:
            # a connection that died after commands ran is not silently replaced: the runner
            # decides what that host's state is
            raise _Failed(f"the connection to {self._where} was lost")
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_random_exponential,
        )

        retrying = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    connection, self._jumps = self._open()
        except Exception as exc:
            raise _Failed(self._explain(exc)) from None
        self._connection = connection
        assert connection.transport is not None
        # small request/response exchanges: without TCP_NODELAY, Nagle's algorithm and the
        # peer's delayed ACK add about 40 ms to every command (through a jump host, the TCP
        # socket is the first hop's)
        for opened in [connection, *self._jumps]:
            with contextlib.suppress(OSError, AttributeError):
                opened.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._monitor = AliveMonitor(
            connection.transport, self.settings.alive_interval, self.settings.alive_count_max
        )
        return connection.transport

    def _open(self) -> tuple[Connection, list[Connection]]:
        """The connection to the host and those to its jump hosts (ProxyJump in ~/.ssh/config),
        all open; nothing stays open on failure.

        Each jump host is connected here, not by Fabric (which would accept any key, wait without
        a deadline and ignore the key file): every hop gets the same host-key policy, key file
        and deadlines as the host, and the next hop is reached through a ``direct-tcpip``
        channel opened within ``channel_timeout``. A jump host's failure is a ``_HopFailed``.
        """
        target = self._connection_to(self.host.address, user=self.user, port=self.port)
        self._endpoint = _Endpoint.of(target)
        jumps = self._jump_hosts(target)
        opened: list[Connection] = []
        try:
            sock: paramiko.Channel | None = None
            for jump, onward in itertools.pairwise([*jumps, target]):
                try:
                    self._open_checked(jump, sock)
                except Exception as exc:
                    raise _HopFailed(_Endpoint.of(jump), exc) from exc
                opened.append(jump)
                sock = self._forward(jump, onward)
            self._open_checked(target, sock)
        except BaseException:
            for connection in [target, *reversed(opened)]:
                with contextlib.suppress(Exception):
                    connection.close()
            raise
        return target, opened

    def _connection_to(self, address: str, *, user: str | None, port: int | None) -> Connection:
        """A Fabric connection (not open yet) with our deadlines and key file; ``user`` and
        ``port`` when given, else those of ~/.ssh/config (or of ``address``'s shorthand)."""
        timeout = self.settings.connect_timeout
        connect_kwargs: dict[str, object] = {
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": self.settings.channel_timeout,
        }
        if self.settings.key_file:
            connect_kwargs["key_filename"] = str(_path(self.settings.key_file, self.project_dir))
            connect_kwargs["look_for_keys"] = False
        connection = Connection(address, user=user, port=port, connect_kwargs=connect_kwargs)
        # set after construction: Fabric's constructor rounds it down to whole seconds
        connection.connect_timeout = timeout
        return connection

    def _jump_hosts(self, target: Connection) -> list[Connection]:
        """The hops of ``target``'s ProxyJump, first hop first (none without one)."""
        spec = str(target.ssh_config.get("proxyjump") or "").strip()
        if not spec:
            return []  # Fabric's own gateway stays only for a ProxyCommand
        # never Fabric's gateway: it would accept any key of a jump host, with no deadline
        target.gateway = None
        if spec.lower() == "none":
            return []
        jumps = [
            self._connection_to(hop.strip(), user=None, port=None)
            for hop in spec.split(",")
            if hop.strip()
        ]
        for jump in jumps:
            jump.gateway = None  # each hop is reached through the channel of the one before
        first = jumps[0]
        # OpenSSH follows the first hop's own proxy settings; those of later hops are replaced
        # by the chain. A `Host *` ProxyJump naming the hop itself is no proxy at all.
        own = str(first.ssh_config.get("proxyjump") or "").strip()
        own_hops = {first.derive_shorthand(h.strip())["host"] for h in own.split(",") if h.strip()}
        if "proxycommand" in first.ssh_config or (
            own and own.lower() != "none" and own_hops != {first.original_host}
        ):
            raise _HopFailed(
                _Endpoint.of(first),
                _Unsupported(
                    "its own ProxyJump or ProxyCommand in ssh config is not followed by "
                    "deploylib: name every hop, in order, in the ProxyJump of the host"
                ),
            )
        return jumps

    def _open_checked(self, connection: Connection, sock: paramiko.Channel | None) -> None:
        """Open ``connection`` (through ``sock`` if given) under our host-key policy."""
        if sock is not None:
            connection.connect_kwargs["sock"] = sock
        client = connection.client
        client.get_host_keys().clear()
        if self.known_hosts.exists():
            client.get_host_keys().load(str(self.known_hosts))
        policy: paramiko.MissingHostKeyPolicy = (
            TrustOnFirstUse(self.known_hosts)
            if self.settings.accept_new
            else paramiko.RejectPolicy()
        )
        client.set_missing_host_key_policy(policy)
        try:
            connection.open()
        except paramiko.SSHException as exc:
            # paramiko's client stops waiting for the handshake after `timeout` and then
            # fails with "No existing session", racing its own banner timeout: say what it was
            transport = client.get_transport()
            if transport is not None and not transport.remote_version:
                raise _NoBanner(str(exc)) from exc
            raise

    def _forward(self, jump: Connection, onward: Connection) -> paramiko.Channel:
        """A channel from ``jump`` to ``onward``'s SSH port, opened within channel_timeout."""
        assert jump.transport is not None
        try:
            channel: paramiko.Channel = jump.transport.open_channel(
                "direct-tcpip",
                dest_addr=(onward.host, int(onward.port)),
                src_addr=("", 0),
                timeout=self.settings.channel_timeout,
            )
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _ForwardFailed(_Endpoint.of(jump), _Endpoint.of(onward), exc) from exc
        return channel

    @property
    def _where(self) -> str:
        if self._endpoint is not None:
            return self._endpoint.where
        return f"{self.user + '@' if self.user else ''}{self.host.address}:{self.port or 22}"

    def _dead_message(self) -> str:
        return (
            f"{self._where} stopped answering: no reply to keepalives for "
            f"{self.settings.alive_interval * self.settings.alive_count_max:g} s (link down?)"
        )

    def _explain(self, exc: BaseException) -> str:
        """What went wrong while connecting, naming the host (or jump host) it happened on."""
        if isinstance(exc, _HopFailed):
            return self._describe(exc.error, exc.hop, "jump host ")
        if isinstance(exc, _ForwardFailed):
            return (
                f"jump host {exc.jump.where} could not open a connection onward to "
                f"{exc.onward.host}:{exc.onward.port} within "
                f"{self.settings.channel_timeout:g} s: {exc.error.__class__.__name__}: {exc.error}"
            )
        endpoint = self._endpoint or _Endpoint(self.user or "", self.host.address, self.port or 22)
        return self._describe(exc, endpoint, "")

    def _describe(self, exc: BaseException, at: _Endpoint, role: str) -> str:
        where = f"{role}{at.where}"
        timeout = self.settings.connect_timeout
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"the host key of {role}{at.key_name} does not match {self.known_hosts}: "
                f"refusing to connect (if the host was rebuilt, remove its old key with "
                f"`ssh-keygen -R {shlex.quote(at.key_name)} -f {self.known_hosts}`)"
            )
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return (
                f"the host key of {role}{at.key_name} is not in {self.known_hosts}: refusing to "
                "connect (add it after checking its fingerprint, e.g. with ssh-keyscan, or set "
                "accept_new = true in the environment's [ssh] table)"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return f"authentication failed for {where}: {exc}"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            reasons = "; ".join(
                sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()})
            )
            return f"could not connect to {where}: {reasons}"
        if isinstance(exc, _NoBanner) or (
            isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower()
        ):
            return (
                f"no SSH banner from {where} within {timeout:g} s (something accepts "
                "connections there but does not speak SSH, or sshd is overloaded)"
            )
        if isinstance(exc, paramiko.SSHException) and "No existing session" in str(exc):
            return f"the SSH handshake with {where} did not complete within {timeout:g} s"
        if isinstance(exc, socket.timeout | TimeoutError):
            return f"could not connect to {where} within {timeout:g} s"
        if isinstance(exc, _Unsupported):
            return f"{where}: {exc}"
        return f"could not connect to {where}: {exc.__class__.__name__}: {exc}"

    # ------------------------------------------------------------------ operations

    def run(self, command: Command) -> Result:
        line = command.full_line
        stdin = command.stdin_bytes()
        if command.env:
            try:
                lines = [env_line(k, reveal(v)) for k, v in command.env.items()]
            except ValueError as exc:
                return Result(2, stderr=str(exc))
            block = "".join(line + "\n" for line in lines) + "\n"
            line = ENV_PRELUDE + line
            stdin = block.encode() + (stdin or b"")
        chunks = iter([stdin]) if stdin else iter(())
        return self._exec(line, chunks, command.timeout or self.default_timeout)

    def upload(self, upload: Upload) -> Result:
        """Stream the file through ``cat`` on an exec channel; check its sha256 on arrival."""
        q = shlex.quote
        temporary = f"{upload.remote}.part"
        parent = str(Path(upload.remote).parent)
        script = (
            f"mkdir -p {q(parent)} && cat > {q(temporary)} && chmod {upload.mode:o} {q(temporary)}"
            f" && sha256sum {q(temporary)} && mv -f {q(temporary)} {q(upload.remote)}"
        )
        digest = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            with upload.local.open("rb") as file:
                while block := file.read(CHUNK):
                    digest.update(block)
                    yield block

        result = self._exec(script, chunks(), upload.timeout or self.default_timeout)
        if result.ok and not result.stdout.startswith(digest.hexdigest()):
            return Result(1, result.stdout, f"upload to {upload.remote}: sha256 mismatch")
        return result

    def _exec(self, line: str, stdin: Iterator[bytes], timeout: float) -> Result:
        """Run ``line`` on a channel of its own. A command that times out or is aborted is not
        only abandoned: its process group on the host is stopped (TERM, then KILL), so nothing
        of it runs on after deploylib moved on (a put-back, the unlock, the next deploy)."""
        try:
            transport = self._connect()
        except _Failed as failed:
            return Result(UNREACHABLE, stderr=str(failed), unreachable=True)
        self._used = True
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=self.settings.channel_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return self._lost(f"opening a channel: {exc}")
        with self._lock:
            self._channels.add(channel)
            stopping = self._halted  # halted before this command even started: run nothing
        remote = _Remote()
        if stopping:
            channel.close()
            with self._lock:
                self._channels.discard(channel)
            return Result(INTERRUPTED, stderr="interrupted")
        try:
            channel.exec_command(remote.prelude + line)
            result = self._converse(channel, stdin, deadline, timeout, remote)
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
        stdin: Iterator[bytes],
        deadline: float,
        timeout: float,
        remote: _Remote,
    ) -> Result:
        """Feed stdin (in a thread: paramiko wakes it when the window opens) while reading
        stdout and stderr here, until the command exits or a deadline passes. The first line
        of stderr, the shell's pid (``PID_PRELUDE``), goes to ``remote``, not to the result."""
        out: list[bytes] = []
        err: list[bytes] = remote.stderr
        exited_at: float | None = None
        aborted_at: float | None = None
        stop_feeding = threading.Event()
        feeder = threading.Thread(
            target=_feed, args=(channel, stdin, deadline, stop_feeding), daemon=True
        )
        feeder.start()
        try:
            while True:
                if channel in self._aborted and not channel.exit_status_ready():
                    # Ctrl-C: stop the command on the host first (its pid line may still be on
                    # its way), so nothing of it runs on after the clean-up
                    aborted_at = aborted_at or time.monotonic()
                    stop_feeding.set()
                    while channel.recv_stderr_ready():
                        err.append(channel.recv_stderr(CHUNK))
                    remote.take_pid()
                    waited = time.monotonic() - aborted_at
                    if remote.pid is not None or waited > PID_WAIT or channel.closed:
                        if remote.pid is not None:
                            transport = channel.get_transport()
                            if transport is not None:
                                self._stop_group(transport, remote.pid)
                            remote.stopped = True
                        return Result(INTERRUPTED, _text(out), _text(err) + "\ninterrupted")
                if self._monitor is not None and self._monitor.dead:
                    return Result(UNREACHABLE, _text(out), self._dead_message(), unreachable=True)
                if time.monotonic() > deadline:
                    note = f"\ntimed out after {timeout:g} s"
                    return Result(TIMED_OUT, _text(out), _text(err) + note, timed_out=True)
                busy = False
                while channel.recv_ready():
                    out.append(channel.recv(CHUNK))
                    busy = True
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(CHUNK))
                    busy = True
                remote.take_pid()
                drained = not channel.recv_ready() and not channel.recv_stderr_ready()
                finished = channel.closed or channel.eof_received
                if channel.exit_status_ready() and drained and finished:
                    return Result(channel.recv_exit_status(), _text(out), _text(err))
                if channel.exit_status_ready() and drained:
                    # exited, but something (a background process) still holds its output
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > OUTPUT_GRACE:
                        return _left_open(channel.recv_exit_status(), out, err)
                if channel.closed and not channel.exit_status_ready():
                    if channel in self._aborted:
                        return Result(INTERRUPTED, _text(out), _text(err) + "\ninterrupted")
                    return self._lost("the channel closed without an exit status")
                if not busy:
                    select.select([channel], [], [], 0.01)
        finally:
            channel.close()  # wakes a feeder still waiting for window space
            feeder.join(timeout=1)

    def _lost(self, detail: str) -> Result:
        if self._monitor is not None and self._monitor.dead:
            return Result(UNREACHABLE, stderr=self._dead_message(), unreachable=True)
        return Result(UNREACHABLE, stderr=f"{self._where}: {detail}", unreachable=True)

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
        for connection in [self._connection, *reversed(self._jumps)]:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()


#: how long a stopped command's processes get between TERM and KILL
STOP_GRACE = 2.0
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


class _Remote:
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


def _left_open(status: int, out: list[bytes], err: list[bytes]) -> Result:
    """The result of a command that exited while its output was still held open."""
    note = output_left_open_note(
        status,
        "its channel is closed, so what that process writes there from now on is lost "
        "(and a write may kill it with SIGPIPE)",
    )
    return Result(status, _text(out), _text(err), note=note)


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


class _Failed(Exception):
    pass


class _NoBanner(Exception):
    """The server accepted the connection but sent no SSH banner in time."""


class _Unsupported(Exception):
    """A setting deploylib does not follow (it says so rather than ignoring it)."""


class _HopFailed(Exception):
    """Connecting to jump host ``hop`` failed with ``error``."""

    def __init__(self, hop: _Endpoint, error: BaseException) -> None:
        super().__init__(f"jump host {hop.where}: {error}")
        self.hop = hop
        self.error = error


class _ForwardFailed(Exception):
    """Jump host ``jump`` could not open a channel onward to ``onward``."""

    def __init__(self, jump: _Endpoint, onward: _Endpoint, error: BaseException) -> None:
        super().__init__(f"jump host {jump.where} -> {onward.host}:{onward.port}: {error}")
        self.jump = jump
        self.onward = onward
        self.error = error


@dataclass(frozen=True)
class _Endpoint:
    """Where a connection goes, as resolved by Fabric from deploy.toml and ~/.ssh/config."""

    user: str
    host: str
    port: int

    @classmethod
    def of(cls, connection: Connection) -> _Endpoint:
        return cls(str(connection.user), str(connection.host), int(connection.port))

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def key_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def _quiet_paramiko() -> None:
    """Keep paramiko's log records off the terminal.

    paramiko's transport thread logs a failed handshake (e.g. no SSH banner) as an error with a
    traceback; with no handler anywhere, Python's last-resort handler prints that on stderr.
    deploylib's own error message says what happened, so a NullHandler takes the records (an
    application that configures logging still gets them through its own handlers).
    """
    logger = logging.getLogger("paramiko")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _HopFailed):
        return _transient(exc.error)
    if isinstance(exc, _ForwardFailed):
        return True  # the far side refused or timed out: like a refused connect
    if isinstance(exc, _Unsupported):
        return False
    if isinstance(exc, _NoBanner):
        return True  # an sshd at MaxStartups answers late: worth another attempt
    if isinstance(exc, paramiko.BadHostKeyException | paramiko.AuthenticationException):
        return False
    if isinstance(exc, paramiko.SSHException):
        return "banner" in str(exc).lower() or "reset" in str(exc).lower()
    return isinstance(exc, OSError | EOFError)


def _path(value: str, project_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace")
