"""The host-key policy every hop (the host and each jump host) is opened under: the keys of the
user's ``known_hosts`` only (Fabric's own policy would add any key), an unknown key refused, or
remembered when ``accept_new`` is set; a changed key is refused in both modes."""

from __future__ import annotations

from pathlib import Path

import paramiko


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


def check_host_keys(client: paramiko.SSHClient, known_hosts: Path, *, accept_new: bool) -> None:
    """Make ``client`` (not connected yet) trust only the keys of ``known_hosts``."""
    client.get_host_keys().clear()
    if known_hosts.exists():
        client.get_host_keys().load(str(known_hosts))
    policy: paramiko.MissingHostKeyPolicy = (
        TrustOnFirstUse(known_hosts) if accept_new else paramiko.RejectPolicy()
    )
    client.set_missing_host_key_policy(policy)
