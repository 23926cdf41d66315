"""The one connection to a host, reused for everything: opened when first needed, retried (with
jitter, a few times) only while nothing has run on the host yet, watched by keepalives that
expect a reply, and never re-opened once a command ran: the runner decides what a host that was
lost is on."""

from __future__ import annotations

import contextlib
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

    @property
    def known_hosts(self) -> Path:
        return self.opener.known_hosts

    @property
    def dead(self) -> bool:
        """The keepalive watchdog closed the connection: the host stopped answering."""
        return self.monitor is not None and self.monitor.dead

    def transport(self) -> paramiko.Transport:
        """The open transport, connecting (with retries) if there is none; raises ``Failed``."""
        if self._connection is not None and self._connection.is_connected:
            assert self._connection.transport is not None
            return self._connection.transport
        if self.dead:
            raise Failed(self.dead_message())
        if self.used:
            # a connection that died after commands ran is not silently replaced: the runner
            # decides what that host's state is
            raise Failed(f"the connection to {self.where} was lost")
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
                    connection, self._jumps = self._open()
        except Exception as exc:
            endpoint = self.endpoint or Endpoint(self.user or "", self.address, self.port or 22)
            raise Failed(explain(exc, endpoint, self.settings, self.known_hosts)) from None
        self._connection = connection
        assert connection.transport is not None
        self.monitor = AliveMonitor(
            connection.transport, self.settings.alive_interval, self.settings.alive_count_max
        )
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
        if self.monitor is not None:
            self.monitor.stop()
        for connection in [self._connection, *reversed(self._jumps)]:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
