"""The one connection to a host, reused for everything: opened when first needed (or ahead of
it, while the build runs), retried (with jitter, a few times) only while nothing has run on the
host yet, watched by keepalives that expect a reply, and never re-opened once a command ran: the
runner decides what a host that was lost is on."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import paramiko
from fabric import Connection

from deploylib.backends.ssh.failures import Endpoint, Failed, explain, transient
from deploylib.backends.ssh.host_keys import KnownHostsFile
from deploylib.backends.ssh.keepalive import AliveMonitor
from deploylib.backends.ssh.opening import Opener
from deploylib.config import SSHSettings


class HostConnection:
    """The connection to ``address`` (and to its jump hosts); ``user`` and ``port`` when
    given, else those of ~/.ssh/config."""

    def __init__(
        self,
        address: str,
        *,
        user: str | None,
        port: int | None,
        settings: SSHSettings,
        project_dir: Path,
        known: KnownHostsFile | None = None,
        handshakes: threading.Semaphore | None = None,
    ) -> None:
        self.address = address
        self.user = user
        self.port = port
        self.settings = settings
        self.opener = Opener(settings, project_dir, known)
        #: where the connection goes, once resolved from deploy.toml and ~/.ssh/config
        self.endpoint: Endpoint | None = None
        #: a command ran on it: a lost connection is not replaced
        self.used = False
        self.monitor: AliveMonitor | None = None
        self._connection: Connection | None = None
        self._jumps: list[Connection] = []
        #: held while a connection is being opened: a command waits for an open ahead of it
        self._opening = threading.Lock()
        #: why the open ahead failed: the answer of a command that waited for that open
        self._failed_ahead: Failed | None = None
        self._closed = False
        #: shared by a run's connections: at most ``parallel`` handshakes at once, whether
        #: opened ahead or by a command
        self._handshakes = handshakes

    @property
    def known_hosts(self) -> Path:
        return self.opener.known_hosts

    @property
    def dead(self) -> bool:
        """The keepalive watchdog closed the connection: the host stopped answering."""
        return self.monitor is not None and self.monitor.dead

    def transport(self) -> paramiko.Transport:
        """The open transport, connecting (with retries) if there is none, or waiting for the
        open ahead of it; raises ``Failed``. An open ahead that failed while this command
        waited for it is this command's answer; one that failed before (during the build) is
        not: the host may be up by now, or the build made it reachable, so it is opened again."""
        waited = not self._opening.acquire(blocking=False)
        if waited:
            self._opening.acquire()
        try:
            failed, self._failed_ahead = self._failed_ahead, None
            if failed is not None and waited:
                raise failed
            return self._transport()
        finally:
            self._opening.release()

    def open_ahead(self) -> None:
        """Open the connection now, before any command needs it; a failure is kept for a
        command that waited for this open (``transport``)."""
        with self._opening:
            if self._closed or self._connection is not None:
                return
            try:
                self._transport()
            except Failed as failed:
                self._failed_ahead = failed

    def _transport(self) -> paramiko.Transport:
        if self._connection is not None and self._connection.is_connected:
            assert self._connection.transport is not None
            return self._connection.transport
        if self.dead and self.used:
            raise Failed(self.dead_message())
        if not self.used:
            # nothing ran on what was opened (ahead of a long build) and it went silent or was
            # closed by the server: closed for good here, and a new one opened
            self._close_opened()
        if self.used:
            # a connection that died after commands ran is not silently replaced: the runner
            # decides what that host's state is
            raise Failed(f"the connection to {self.where} was lost")
        if self._closed:
            raise Failed(f"the connection to {self.where} was closed")
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_random_exponential,
        )

        retrying = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self._closed:
                        raise Failed(f"the connection to {self.where} was closed")
                    if self._handshakes is None:
                        connection, self._jumps = self._open()
                    else:
                        with self._handshakes:
                            connection, self._jumps = self._open()
        except Failed:
            raise
        except Exception as exc:
            endpoint = self.endpoint or Endpoint(self.user or "", self.address, self.port or 22)
            raise Failed(explain(exc, endpoint, self.settings, self.known_hosts)) from None
        self._connection = connection
        assert connection.transport is not None
        try:
            self.monitor = AliveMonitor(
                connection.transport, self.settings.alive_interval, self.settings.alive_count_max
            )
        except RuntimeError as exc:  # no watchdog could start: a link nobody watches is not used
            self._close_opened()
            raise Failed(f"{self.where}: the connection could not be watched: {exc}") from None
        if self._closed:  # closed (the run ended) while this was opening: it goes too
            self._close_opened()
            raise Failed(f"the connection to {self.where} was closed")
        return connection.transport

    def _open(self) -> tuple[Connection, list[Connection]]:
        """The connection to the host and those to its jump hosts, all open; nothing stays open
        on failure."""
        target = self.opener.connection_to(self.address, user=self.user, port=self.port)
        self.endpoint = Endpoint.of(target)
        return target, self.opener.open(target)

    @property
    def where(self) -> str:
        if self.endpoint is not None:
            return self.endpoint.where
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port or 22}"

    def dead_message(self) -> str:
        return (
            f"{self.where} stopped answering: no reply to keepalives for "
            f"{self.settings.alive_interval * self.settings.alive_count_max:g} s (link down?)"
        )

    def close(self) -> None:
        """Close the connection; one being opened ahead closes as soon as it is open."""
        self._closed = True  # first: an open that ends after this sees it and closes
        self._close_opened()

    def _close_opened(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.stop()
        opened, self._connection = self._connection, None
        jumps, self._jumps = self._jumps, []
        for connection in [opened, *reversed(jumps)]:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
