"""A target host as deploy.toml names it."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_HOST = "local"


@dataclass(frozen=True)
class Host:
    """One target. ``local`` means this machine through Invoke, no SSH."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None  # None: the environment's ssh.port
    roles: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.address == LOCAL_HOST


LOCAL = Host(name=LOCAL_HOST, address=LOCAL_HOST)
