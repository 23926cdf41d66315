"""Opening connections, hop by hop: Fabric connections with deploylib's deadlines and key file,
each opened under the host-key policy, through the jump hosts of ``ProxyJump``.

Each jump host is connected here, not by Fabric (which would accept any key, wait without a
deadline and ignore the key file): every hop gets the same host-key policy, key file and
deadlines as the host, and the next hop is reached through a ``direct-tcpip`` channel opened
within ``channel_timeout``."""

from __future__ import annotations

import contextlib
import itertools
import threading
from pathlib import Path

import paramiko
from fabric import Config, Connection

from deploylib.backends.ssh.failures import (
    Endpoint,
    ForwardFailed,
    HopFailed,
    NoBanner,
    Unsupported,
)
from deploylib.backends.ssh.host_keys import KnownHostsFile, check_host_keys
from deploylib.backends.ssh.tcp import transport_factory
from deploylib.config import SSHSettings


class Opener:
    """Opens connections with an environment's ``[ssh]`` settings."""

    def __init__(
        self, settings: SSHSettings, project_dir: Path, known: KnownHostsFile | None = None
    ) -> None:
        self.settings = settings
        self.project_dir = project_dir
        #: known_hosts as the run read it once (None: read for each connection)
        self.known = known
        self._config: Config | None = None
        self._config_lock = threading.Lock()

    def _fabric_config(self) -> Config:
        """One Fabric configuration for every connection this opens: ~/.ssh/config and
        /etc/ssh/ssh_config read once, not once per host (each read and merge cost about
        0.4 ms of this machine's CPU per host). Connections only read it."""
        with self._config_lock:
            if self._config is None:
                self._config = Config()
            return self._config

    @property
    def known_hosts(self) -> Path:
        return _path(self.settings.known_hosts, self.project_dir)

    def connection_to(self, address: str, *, user: str | None, port: int | None) -> Connection:
        """A Fabric connection (not open yet) with our deadlines and key file; ``user`` and
        ``port`` when given, else those of ~/.ssh/config (or of ``address``'s shorthand)."""
        timeout = self.settings.connect_timeout
        connect_kwargs: dict[str, object] = {
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": self.settings.channel_timeout,
            # TCP_NODELAY and quick ACKs from the first byte: ``backends.ssh.tcp``
            "transport_factory": transport_factory,
        }
        if self.settings.key_file:
            connect_kwargs["key_filename"] = str(_path(self.settings.key_file, self.project_dir))
            connect_kwargs["look_for_keys"] = False
        connection = Connection(
            address,
            user=user,
            port=port,
            config=self._fabric_config(),
            connect_kwargs=connect_kwargs,
        )
        # set after construction: Fabric's constructor rounds it down to whole seconds
        connection.connect_timeout = timeout
        return connection

    def resolved(self, address: str, *, user: str | None, port: int | None) -> dict[str, object]:
        """Where a connection to ``address`` goes, with what, as deploy.toml and ~/.ssh/config
        decide it (deploy.toml first): nothing is opened."""
        target = self.connection_to(address, user=user, port=port)
        config = target.ssh_config
        # the keys offered, in order: deploy.toml's key_file, then ~/.ssh/config's IdentityFile
        # (Fabric merges them); without key_file, the agent's and the default keys after them
        named = target.connect_kwargs.get("key_filename") or []
        keys = [str(k) for k in ([named] if isinstance(named, str) else named)]
        if target.connect_kwargs.get("look_for_keys", True):
            keys.append("ssh-agent and default keys")
        return {
            "hostname": target.host,
            "port": target.port,
            "user": target.user,
            "identity_files": keys,
            "proxy_jump": str(config.get("proxyjump") or "") or None,
        }

    def open(self, target: Connection) -> list[Connection]:
        """Open ``target`` through its jump hosts (ProxyJump in ~/.ssh/config); the connections
        to the jump hosts, all open. Nothing stays open on failure; a jump host's failure is a
        ``HopFailed``."""
        jumps = self._jump_hosts(target)
        opened: list[Connection] = []
        try:
            sock: paramiko.Channel | None = None
            for jump, onward in itertools.pairwise([*jumps, target]):
                try:
                    self._open_checked(jump, sock)
                except Exception as exc:
                    raise HopFailed(Endpoint.of(jump), exc) from exc
                opened.append(jump)
                sock = self._forward(jump, onward)
            self._open_checked(target, sock)
        except BaseException:
            for connection in [target, *reversed(opened)]:
                with contextlib.suppress(Exception):
                    connection.close()
            raise
        return opened

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
            self.connection_to(hop.strip(), user=None, port=None)
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
            raise HopFailed(
                Endpoint.of(first),
                Unsupported(
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
        check_host_keys(
            client, self.known_hosts, accept_new=self.settings.accept_new, read=self.known
        )
        try:
            connection.open()
        except paramiko.SSHException as exc:
            # paramiko's client stops waiting for the handshake after `timeout` and then
            # fails with "No existing session", racing its own banner timeout: say what it was
            transport = client.get_transport()
            if transport is not None and not transport.remote_version:
                raise NoBanner(str(exc)) from exc
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
            raise ForwardFailed(Endpoint.of(jump), Endpoint.of(onward), exc) from exc
        return channel


def _path(value: str, project_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path
