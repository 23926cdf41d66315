"""Where a connection goes, and what went wrong getting there: the failures of opening a
connection (of the host or of a jump host), which of them are worth another attempt, and the
message that says what happened and on which hop. paramiko's own log records are kept off the
terminal: these messages replace them."""

from __future__ import annotations

import logging
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from deploylib.config import SSHSettings


class Failed(Exception):
    """The host cannot be reached (any more); the message says why."""


class NoBanner(Exception):
    """The server accepted the connection but sent no SSH banner in time."""


class Unsupported(Exception):
    """A setting deploylib does not follow (it says so rather than ignoring it)."""


class HopFailed(Exception):
    """Connecting to jump host ``hop`` failed with ``error``."""

    def __init__(self, hop: Endpoint, error: BaseException) -> None:
        super().__init__(f"jump host {hop.where}: {error}")
        self.hop = hop
        self.error = error


class ForwardFailed(Exception):
    """Jump host ``jump`` could not open a channel onward to ``onward``."""

    def __init__(self, jump: Endpoint, onward: Endpoint, error: BaseException) -> None:
        super().__init__(f"jump host {jump.where} -> {onward.host}:{onward.port}: {error}")
        self.jump = jump
        self.onward = onward
        self.error = error


@dataclass(frozen=True)
class Endpoint:
    """Where a connection goes, as resolved by Fabric from deploy.toml and ~/.ssh/config."""

    user: str
    host: str
    port: int

    @classmethod
    def of(cls, connection: Connection) -> Endpoint:
        return cls(str(connection.user), str(connection.host), int(connection.port))

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def key_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def transient(exc: BaseException) -> bool:
    """Whether opening the connection again may succeed where this attempt failed."""
    if isinstance(exc, HopFailed):
        return transient(exc.error)
    if isinstance(exc, ForwardFailed):
        return True  # the far side refused or timed out: like a refused connect
    if isinstance(exc, Unsupported):
        return False
    if isinstance(exc, NoBanner):
        return True  # an sshd at MaxStartups answers late: worth another attempt
    if isinstance(exc, paramiko.BadHostKeyException | paramiko.AuthenticationException):
        return False
    if isinstance(exc, paramiko.SSHException):
        return "banner" in str(exc).lower() or "reset" in str(exc).lower()
    return isinstance(exc, OSError | EOFError)


def explain(
    exc: BaseException, endpoint: Endpoint, settings: SSHSettings, known_hosts: Path
) -> str:
    """What went wrong while connecting to ``endpoint`` (the host), naming the host or jump
    host it happened on."""
    if isinstance(exc, HopFailed):
        return _describe(exc.error, exc.hop, "jump host ", settings, known_hosts)
    if isinstance(exc, ForwardFailed):
        return (
            f"jump host {exc.jump.where} could not open a connection onward to "
            f"{exc.onward.host}:{exc.onward.port} within "
            f"{settings.channel_timeout:g} s: {exc.error.__class__.__name__}: {exc.error}"
        )
    return _describe(exc, endpoint, "", settings, known_hosts)


def _describe(
    exc: BaseException, at: Endpoint, role: str, settings: SSHSettings, known_hosts: Path
) -> str:
    where = f"{role}{at.where}"
    timeout = settings.connect_timeout
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"the host key of {role}{at.key_name} does not match {known_hosts}: "
            f"refusing to connect (if the host was rebuilt, remove its old key with "
            f"`ssh-keygen -R {shlex.quote(at.key_name)} -f {known_hosts}`)"
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (
            f"the host key of {role}{at.key_name} is not in {known_hosts}: refusing to "
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
    if isinstance(exc, NoBanner) or (
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
    if isinstance(exc, Unsupported):
        return f"{where}: {exc}"
    return f"could not connect to {where}: {exc.__class__.__name__}: {exc}"


def quiet_paramiko() -> None:
    """Keep paramiko's log records off the terminal.

    paramiko's transport thread logs a failed handshake (e.g. no SSH banner) as an error with a
    traceback; with no handler anywhere, Python's last-resort handler prints that on stderr.
    deploylib's own error message says what happened, so a NullHandler takes the records (an
    application that configures logging still gets them through its own handlers).
    """
    logger = logging.getLogger("paramiko")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
