"""Deploy locks: who holds one, whether it is stale, and the heartbeat that says it is not.

The lock itself is ``<deploy_to>/.deploylib/lock/``: prepared whole in a directory of its own and
renamed into place, so it never exists without its ``owner.json``. ``owner.json`` says who took
it and carries the deploy's random ``token``; ``heartbeat`` is touched by the running deploy
every ``interval`` seconds, and every command that changes the target checks the token first.

A lock is **stale** when its heartbeat stopped: older than ``STALE_BEATS`` intervals. A process
id alone proves nothing (another PID namespace — a CI container — reuses host names and shows
no such pid), so the owner's process is looked at only when the owner record proves it ran in
this very kernel boot and PID namespace; then a pid that is gone, a zombie, or a pid now used by
a process that started at another time, means the deploy is over, and the same process still
running means it is not, however old the heartbeat. A stale lock is reported,
never broken silently: ``deploylib unlock --env E`` removes it (``--force`` removes any lock).

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


def new_owner(
    release: str | None, started_at: str, interval: float, token: str | None = None
) -> dict[str, Any]:
    """The ``owner.json`` of a lock this process takes (``token``: a fixed one, for tests)."""
    pid = os.getpid()
    owner: dict[str, Any] = {
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "pid": pid,
        "release": release,
        "started_at": started_at,
        "heartbeat_interval": interval,
        "token": token or secrets.token_hex(8),
    }
    owner.update({k: v for k, v in process_identity(pid).items() if v is not None})
    return owner


def process_identity(pid: int) -> dict[str, Any]:
    """What tells this process apart from any other on any machine: the kernel's boot id,
    the PID namespace, and the process's start time (in clock ticks since boot)."""
    return {"boot_id": _boot_id(), "pid_ns": _pid_namespace(), "pid_start": _start_time(pid)}


def inherited_token() -> str | None:
    """The lock token of the deploy this process runs inside, if any."""
    return os.environ.get(INHERITED_LOCK) or None


def stale_reason(owner: Mapping[str, Any], age: int | None) -> str | None:
    """Why a lock looks abandoned, or None while its deploy may be alive. A deploy whose
    process is proven alive here (this boot, this PID namespace, the same start time) holds
    its lock however old its heartbeat: it may be waiting on a slow host."""
    alive, gone = _owner_process(owner)
    if gone:
        return gone
    if alive and owner.get("pid") != os.getpid():
        return None
    # this very process (a program that runs deploys one after the other, in process): a lock
    # an earlier run of it left is judged by its heartbeat, as any other
    interval = owner.get("heartbeat_interval")
    beat = interval if isinstance(interval, int | float) and interval > 0 else HEARTBEAT_INTERVAL
    if age is not None and age > STALE_BEATS * beat:
        return f"no heartbeat for {age} s"
    return None


def _owner_process(owner: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether the owner's process is proven alive here, and why it is proven gone; neither
    when that cannot be told here."""
    pid, start = owner.get("pid"), owner.get("pid_start")
    if not isinstance(pid, int) or not isinstance(start, int):
        return False, None
    boot, namespace = owner.get("boot_id"), owner.get("pid_ns")
    if boot is None or boot != _boot_id() or namespace is None or namespace != _pid_namespace():
        return False, None  # another machine, boot or PID namespace: its pids mean nothing here
    where = f"pid {pid} on {owner.get('host')}"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False, f"its deploy ({where}) is gone"
    fields = stat.rsplit(")", 1)[-1].split()
    # a zombie waits for its parent to reap it, but its deploy is over
    if fields[0] == "Z":
        return False, f"its deploy ({where}) is gone"
    if _start_of(fields) != start:
        return False, f"its deploy ({where}) is gone (the pid is another process now)"
    return True, None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return _start_of(stat.rsplit(")", 1)[-1].split())


def _start_of(fields: list[str]) -> int | None:
    # fields after "(comm)": state is field 3 of stat, starttime field 22
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
