"""The tasks that read the fleet outside a deploy — ``status``, ``releases``, ``check`` — and
``unlock``, which changes nothing but the locks it was asked to remove.

Each reaches every host through ``run_everywhere`` (no ``Runner``: no lock is taken, no release
changes) and reads a target's state with the same one-round-trip command a deploy's lock uses.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from deploylib import fleet, locks
from deploylib.commands import Command, Result
from deploylib.config import Environment
from deploylib.errors import LockHeld, LockOwner, StepFailed
from deploylib.fleet import Target
from deploylib.hosts import Host
from deploylib.remote import free_space
from deploylib.remote import lock as remote_lock
from deploylib.remote import reading as state_reading
from deploylib.remote.layout import Layout
from deploylib.remote.state import TargetState
from deploylib.reporting import SilentReporter
from deploylib.wiring import Loaded, backend_factory

__all__ = ["check", "read_states", "release_history", "run_everywhere", "status_rows", "unlock"]


def read_states(
    env: Environment, hosts: Sequence[Host]
) -> tuple[dict[str, TargetState], dict[str, str]]:
    """Read every target's state, changing nothing: the states, and why others could not be read."""
    layout = Layout(env.deploy_to)
    results = run_everywhere(env, hosts, state_reading.state_command(layout))
    states = {n: state_reading.parse_state(r.stdout, layout) for n, r in results.items() if r.ok}
    errors = {
        n: r.summary(redact=env.redactor.redact)
        for n, r in results.items()
        if not r.ok or n not in states or not states[n].read
    }
    for name in errors:
        states.pop(name, None)
    return states, errors


def run_everywhere(
    env: Environment, hosts: Sequence[Host], command: Command | Callable[[Host], Command]
) -> dict[str, Result]:
    """A command (the same, or one per host) on every host, outside a deploy (status, check,
    unlock): ``ssh.parallel`` at a time, the results by host name. It runs as a deploy's steps
    do (``fleet.run_parallel``): Ctrl-C stops what runs on every host before it returns."""
    make = backend_factory(env, dry_run=False, reporter=SilentReporter())
    targets = [Target(host, make(host)) for host in hosts]
    results: dict[str, Result] = {}

    def work(target: Target) -> None:
        results[target.name] = target.backend.run(
            command(target.host) if callable(command) else command
        )

    try:
        errors = fleet.run_parallel(work, targets, env.ssh.parallel)
    finally:
        for target in targets:
            target.backend.close()
    if errors:
        raise next(iter(errors.values()))
    return {host.name: results[host.name] for host in hosts}


def status_rows(env: Environment, hosts: Sequence[Host]) -> list[dict[str, Any]]:
    """A row per host; a host that cannot be read gets a row with its ``error``."""
    states, errors = read_states(env, hosts)
    rows: list[dict[str, Any]] = []
    for host in hosts:
        name = host.name
        if name in errors:
            rows.append({"host": name, "error": errors[name], "current": None, "locked": None})
            continue
        state = states[name]
        entry = _last_entry_for(state, state.current)
        rows.append(
            {
                "host": name,
                "error": None,
                "current": state.current,
                "revision": entry.get("revision") if entry else None,
                "deployed_at": entry.get("time") if entry else None,
                "deployed_by": entry.get("user") if entry else None,
                "deployed_from": entry.get("controller") if entry else None,
                "took": entry.get("seconds") if entry else None,
                # a container release: its image, as the deploy that made it recorded it
                **({"image": image} if (image := _image_of(state, state.current)) else {}),
                "locked": state.locked,
                "lock_owner": dict(state.lock_owner) if state.lock_owner else None,
                "lock_age": state.lock_age if state.locked else None,
                "lock_stale": (
                    locks.stale_reason(state.lock_owner or {}, state.lock_age)
                    if state.locked
                    else None
                ),
                "releases": sorted(state.releases),
                # a damaged release log, or one that does not explain current: say so
                "history_problem": state.log_problem(),
                # blue-green: which slot is live and what each runs
                **({"slots": state.slots.as_data()} if state.slots else {}),
            }
        )
    return _marked_split(rows)


def _marked_split(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row says whether the fleet runs one release (``consistent``) and whether this host
    runs another release than most (``differs``); hosts that could not be read count for
    neither."""
    read = [row for row in rows if not row.get("error")]
    counts = Counter(row["current"] for row in read)
    majority = max(counts, key=lambda r: (counts[r], r or "")) if counts else None
    consistent = len(counts) <= 1
    for row in rows:
        row["consistent"] = consistent
        row["differs"] = not row.get("error") and row["current"] != majority
    return rows


def split_line(rows: list[dict[str, Any]]) -> str | None:
    """One line that says a fleet is on different releases, and which hosts differ."""
    if all(row.get("consistent", True) for row in rows):
        return None
    read = [row for row in rows if not row.get("error")]
    others = [row for row in read if row.get("differs")]
    if len(read) - len(others) <= len(others) and len(others) > 1:  # no release runs on most
        listed = ", ".join(f"{row['host']} ({row['current'] or 'no release'})" for row in read)
        return f"the fleet is split: {listed}"
    most = next(row["current"] for row in read if not row["differs"])
    listed = ", ".join(f"{row['host']} ({row['current'] or 'no release'})" for row in others)
    return f"the fleet is split: most hosts run {most or 'no release'}; {listed} differ"


def _last_entry_for(state: TargetState, release: str | None) -> dict[str, Any] | None:
    for entry in reversed(state.log):
        if release and entry.get("release") == release and entry.get("outcome") == "success":
            return dict(entry)
    return None


def _image_of(state: TargetState, release: str | None) -> str | None:
    """The image ``release`` runs, from the deploy that made it (None: not a container)."""
    for entry in reversed(state.log):
        if release and entry.get("release") == release and entry.get("image"):
            return str(entry["image"])
    return None


def release_history(env: Environment, hosts: Sequence[Host]) -> list[dict[str, Any]]:
    """Every event of every target's release log, merged: one row per event, with its hosts."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    states, errors = read_states(env, hosts)
    if errors:
        name, reason = next(iter(errors.items()))
        raise StepFailed("releases", name, reason)
    for name, state in states.items():
        for entry in state.log:
            key = (
                entry.get("time"),
                entry.get("event"),
                entry.get("release"),
                entry.get("outcome"),
            )
            row = merged.setdefault(
                key,
                {
                    "time": entry.get("time"),
                    "event": entry.get("event"),
                    "release": entry.get("release"),
                    "revision": entry.get("revision"),
                    "outcome": entry.get("outcome"),
                    "user": entry.get("user"),
                    "error": entry.get("error"),
                    **({"image": entry["image"]} if entry.get("image") else {}),
                    "hosts": [],
                    "on_disk": [],
                },
            )
            row["hosts"].append(name)
            if entry.get("release") in state.releases:
                row["on_disk"].append(name)
    return sorted(merged.values(), key=lambda r: (str(r["time"]), str(r["release"])))


def check(loaded: Loaded, *, verbose: bool = False) -> list[dict[str, Any]]:
    """Reach every target and report whether a deploy could write there; change nothing.
    With ``verbose`` each row also says how the host is reached (``ssh``: host name, port,
    user, key files and jump host, from deploy.toml first, then ~/.ssh/config)."""
    env = loaded.env
    q = shlex.quote
    script = (
        f'p={q(env.deploy_to)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
        'if [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi; '
        "echo free_kb=$(" + free_space.available_kb('"$p"') + "); echo user=$(id -un)"
    )
    rows = []
    results = run_everywhere(env, loaded.hosts, Command(script, timeout=30))
    make = backend_factory(env, dry_run=False, reporter=SilentReporter())
    for host in loaded.hosts:
        result = results[host.name]
        facts = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        free_kb = int(facts["free_kb"]) if facts.get("free_kb", "").isdigit() else None
        problems = []
        if not result.ok:
            # the host was not reached (or the check could not run): that is all we know
            problems.append(result.summary(redact=env.redactor.redact))
        elif facts.get("writable") != "yes":
            problems.append(f"{env.deploy_to} is not writable")
        rows.append(
            {
                "host": host.name,
                "ok": not problems,
                "user": facts.get("user"),
                "writable": facts.get("writable") == "yes",
                "free_mb": free_kb // 1024 if free_kb is not None else None,
                "problems": problems,
            }
        )
        if verbose:
            rows[-1]["ssh"] = make(host).resolved() or None
    return rows


def unlock(env: Environment, hosts: Sequence[Host], *, force: bool = False) -> list[str]:
    """Remove deploy locks. Without ``force`` only stale ones (see ``locks.stale_reason``):
    a lock whose deploy may still be alive is refused with ``LockHeld``. Each removal checks
    that the lock is still the one judged here (its token), so a lock a new deploy took in the
    meantime stays."""
    layout = Layout(env.deploy_to)
    states, errors = read_states(env, hosts)
    if errors:
        name, reason = next(iter(errors.items()))
        raise StepFailed("unlock", name, f"{reason}; nothing was unlocked")
    alive = []
    for name, state in states.items():
        owner = state.lock_owner or {}
        if state.locked and not force and not locks.stale_reason(owner, state.lock_age):
            alive.append(LockOwner(name, owner, state.lock_age))
    if alive:
        raise LockHeld(alive, env.name)
    locked = [host for host in hosts if states[host.name].locked]

    def unlock_command(host: Host) -> Command:
        token = (states[host.name].lock_owner or {}).get("token")
        return remote_lock.unlock_command(
            layout, token if isinstance(token, str) and _is_token(token) else None
        )

    results = run_everywhere(env, locked, unlock_command)
    for name, result in results.items():
        if not result.ok:
            raise StepFailed("unlock", name, result.summary(redact=env.redactor.redact), result)
    return list(results)


def _is_token(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{8,64}", text) is not None
