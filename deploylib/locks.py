"""Deploy locks: who holds one, whether it is stale, and the heartbeat that says it is not.

The lock itself is ``<deploy_to>/.deploylib/lock/``, taken with ``mkdir`` (atomic on every file
system). ``owner.json`` says who took it; ``heartbeat`` is touched by the running deploy every
``interval`` seconds. A lock is stale when its heartbeat is older than ``STALE_BEATS`` intervals,
or when its owner ran on this machine and that process is gone. A stale lock is reported, never
broken silently: ``deploylib unlock --env E --force`` removes it.

Commands a deploy runs get ``DEPLOYLIB_LOCK_TOKEN``: a deploy started from inside them (a hook
that runs another pipeline on the same environment) finds its parent's token on the lock and goes
on under it instead of waiting for it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INHERITED_LOCK = "DEPLOYLIB_LOCK_TOKEN"
HEARTBEAT_INTERVAL = 30.0
STALE_BEATS = 4


def new_owner(release: str | None, started_at: str, interval: float) -> dict[str, Any]:
    return {
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "release": release,
        "started_at": started_at,
        "heartbeat_interval": interval,
        "token": secrets.token_hex(8),
    }


def inherited_token() -> str | None:
    """The lock token of the deploy this process runs inside, if any."""
    return os.environ.get(INHERITED_LOCK) or None


def stale_reason(owner: Mapping[str, Any], age: int | None) -> str | None:
    """Why a lock looks abandoned, or None while its deploy looks alive."""
    pid = owner.get("pid")
    if owner.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return f"its deploy (pid {pid} on {owner.get('host')}) is gone"
    interval = owner.get("heartbeat_interval")
    limit = STALE_BEATS * (interval if isinstance(interval, int | float) else HEARTBEAT_INTERVAL)
    if age is not None and age > limit:
        return f"no heartbeat for {age} s"
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # a zombie waits for its parent to reap it, but its deploy is over
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
