"""The host-key policy every hop (the host and each jump host) is opened under: the keys of the
user's ``known_hosts`` only (Fabric's own policy would add any key), an unknown key refused, or
remembered when ``accept_new`` is set; a changed key is refused in both modes.

``KnownHostsFile`` reads a known_hosts file once for a whole run, however many hosts it opens:
paramiko's own ``HostKeys.load`` reads the file again for every connection and compares each
line with every line before it (for hashed names, an HMAC each), which for a 1,000-entry file
costs about 0.4 s per host."""

from __future__ import annotations

import threading
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry


class KnownHostsFile:
    """The entries of known_hosts files, each file read once (shared by a run's connections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[Path, list[HostKeyEntry]] = {}

    def entries(self, path: Path) -> list[HostKeyEntry]:
        """The entries of ``path`` (none when it does not exist), read the first time only."""
        with self._lock:
            if path not in self._read:
                self._read[path] = _entries_of(path)
            return list(self._read[path])

    def remember(self, path: Path, hostname: str, key: paramiko.PKey) -> None:
        """A key just added to ``path`` (``accept_new``): later connections of the run know it."""
        with self._lock:
            if path in self._read:
                self._read[path].append(HostKeyEntry([hostname], key))


def _entries_of(path: Path) -> list[HostKeyEntry]:
    """Every entry of a known_hosts file, in order, read line by line (what paramiko reads,
    without its comparison of each line with all before it: a name listed twice keeps both)."""
    if not path.exists():
        return []
    entries = []
    with path.open(encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = HostKeyEntry.from_line(line, number)
            except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey):
                continue  # a line paramiko cannot read (a marker, bad base64): no key
            if entry is not None:
                entries.append(entry)
    return entries


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """``accept_new = true``: remember an unknown key in known_hosts (a changed key still fails)."""

    def __init__(self, known_hosts: Path, read: KnownHostsFile | None = None) -> None:
        self.known_hosts = known_hosts
        self.read = read

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.known_hosts.open("a", encoding="ascii") as file:
            file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.read is not None:
            self.read.remember(self.known_hosts, hostname, key)


def check_host_keys(
    client: paramiko.SSHClient,
    known_hosts: Path,
    *,
    accept_new: bool,
    read: KnownHostsFile | None = None,
) -> None:
    """Make ``client`` (not connected yet) trust only the keys of ``known_hosts`` (as ``read``
    read it for the run, when given)."""
    keys = client.get_host_keys()
    keys.clear()
    if read is not None:
        # paramiko's HostKeys looks names up in its ``_entries``; this fills them as ``load``
        # would, from the file the run read once
        keys._entries.extend(read.entries(known_hosts))
    elif known_hosts.exists():
        keys.load(str(known_hosts))
    policy: paramiko.MissingHostKeyPolicy = (
        TrustOnFirstUse(known_hosts, read) if accept_new else paramiko.RejectPolicy()
    )
    client.set_missing_host_key_policy(policy)
