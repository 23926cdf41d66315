"""An environment's ``hosts = [...]``: each string or table read into a ``Host``."""

from __future__ import annotations

import re

from deploylib.config.schema import HostEntry
from deploylib.errors import ConfigError
from deploylib.hosts import LOCAL_HOST, Host

HOST_STRING_RE = re.compile(  # always used with fullmatch
    r"(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@)?(?P<address>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def parse_host(entry: str | HostEntry, env: str, index: int, file: str) -> Host:
    key = f"environments.{env}.hosts.{index}"
    if isinstance(entry, str):
        if entry == LOCAL_HOST:
            return Host(name=LOCAL_HOST, address=LOCAL_HOST)
        match = HOST_STRING_RE.fullmatch(entry)
        if not match:
            raise ConfigError(
                f"not a host: {entry!r} (expected 'local', 'address', 'user@address[:port]')",
                file=file,
                key=key,
            )
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"port {port} out of range", file=file, key=key)
        address = match["address"].strip("[]")
        return Host(name=address, address=address, user=match["user"], port=port)
    if entry.address == LOCAL_HOST:
        return Host(name=entry.name or LOCAL_HOST, address=LOCAL_HOST, roles=tuple(entry.roles))
    return Host(
        name=entry.name or entry.address,
        address=entry.address,
        user=entry.user,
        port=entry.port,
        roles=tuple(entry.roles),
    )
