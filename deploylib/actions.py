"""What each task does, as plain functions: load and validate, then hand over to the runner.

The Invoke tasks (``deploylib.tasks``) are thin wrappers over these; tests call them directly.
Every function validates everything before any target is touched and raises ``DeployError``s;
the command line maps them to exit codes.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploylib import fleet, locks
from deploylib.backends.base import Backend
from deploylib.backends.local import LocalBackend
from deploylib.backends.printer import PrinterBackend
from deploylib.commands import Command, Result
from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError, LockHeld, LockOwner, StepFailed
from deploylib.fleet import Target
from deploylib.hosts import LOCAL, Host
from deploylib.pipeline import Pipeline, load_pipeline
from deploylib.remote import lock as remote_lock
from deploylib.remote import state as target_state
from deploylib.remote.layout import Layout
from deploylib.remote.state import TargetState
from deploylib.reporting import Event, Reporter
from deploylib.runner import Clock, Outcome, Runner, utc_now

REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/@:-]{0,127}")


@dataclass(frozen=True)
class Loaded:
    env: Environment
    pipeline: Pipeline
    hosts: tuple[Host, ...]


def load(
    config: str | Path,
    env: str | None,
    *,
    pipeline: str | None = None,
    hosts: str | None = None,
    roles: str | None = None,
) -> Loaded:
    """Config, env files and pipeline, validated; hosts narrowed by ``--hosts``/``--roles``."""
    environment = load_environment(Path(config), env or "")
    chosen, _ = load_pipeline(environment.project_dir, pipeline or environment.pipeline)
    selected = select_hosts(environment, hosts, roles)
    return Loaded(environment, chosen, selected)


def select_hosts(env: Environment, hosts: str | None, roles: str | None) -> tuple[Host, ...]:
    selected = list(env.hosts)
    if hosts is not None:
        wanted = [h.strip() for h in hosts.split(",") if h.strip()]
        if not wanted:
            raise ConfigError(f"names no host: {hosts!r}", key="--hosts")
        known = {h.name for h in env.hosts} | {h.address for h in env.hosts}
        unknown = [h for h in wanted if h not in known]
        if unknown:
            raise ConfigError(
                f"host {unknown[0]!r} is not in environment {env.name!r}", key="--hosts"
            )
        selected = [h for h in selected if h.name in wanted or h.address in wanted]
    if roles is not None:
        wanted_roles = {r.strip() for r in roles.split(",") if r.strip()}
        if not wanted_roles:
            raise ConfigError(f"names no role: {roles!r}", key="--roles")
        selected = [h for h in selected if wanted_roles & set(h.roles)]
        if not selected:
            raise ConfigError(
                f"no host of environment {env.name!r} has role(s) {roles}", key="--roles"
            )
    return tuple(selected)


def backend_factory(
    env: Environment, *, dry_run: bool, reporter: Reporter
) -> Callable[[Host], Backend]:
    def emit(host: str, line: str) -> None:
        reporter.emit(Event("dry", line, host=host))

    def make(host: Host) -> Backend:
        if dry_run:
            return PrinterBackend(host, emit)
        if host.is_local:
            return LocalBackend(host, default_timeout=env.command_timeout)
        # imported here: fabric and paramiko cost a local deploy nothing
        from deploylib.backends.ssh import SSHBackend

        return SSHBackend(
            host, env.ssh, project_dir=env.project_dir, default_timeout=env.command_timeout
        )

    return make


def resolve_revision(env: Environment, revision: str | None) -> str:
    if revision is None:
        result = LocalBackend(LOCAL).run(
            Command.of(
                "git", "rev-parse", "--short=12", "HEAD", cwd=str(env.project_dir), timeout=10
            )
        )
        revision = result.stdout.strip() if result.ok else "unknown"
        if not REVISION_RE.fullmatch(revision):
            revision = "unknown"
    if not REVISION_RE.fullmatch(revision):
        raise ConfigError(
            f"not a revision: {revision!r} (letters, digits and ._+/@:- only, at most 128)",
            key="--revision",
        )
    return revision


def deploy(
    loaded: Loaded,
    *,
    reporter: Reporter,
    revision: str | None = None,
    dry_run: bool = False,
    clock: Clock = utc_now,
) -> Outcome:
    env = loaded.env
    factory = backend_factory(env, dry_run=dry_run, reporter=reporter)
    runner = Runner(
        env,
        loaded.pipeline,
        backend_for=factory,
        controller=factory(LOCAL),
        reporter=reporter,
        revision=resolve_revision(env, revision),
        clock=clock,
    )
    return runner.deploy(loaded.hosts)


def rollback(
    loaded: Loaded, *, reporter: Reporter, to: str | None = None, clock: Clock = utc_now
) -> Outcome:
    env = loaded.env
    factory = backend_factory(env, dry_run=False, reporter=reporter)
    runner = Runner(
        env,
        loaded.pipeline,
        backend_for=factory,
        controller=factory(LOCAL),
        reporter=reporter,
        clock=clock,
    )
    return runner.rollback(loaded.hosts, to)


# ---------------------------------------------------------------------------- read-only tasks


def read_states(
    env: Environment, hosts: Sequence[Host]
) -> tuple[dict[str, TargetState], dict[str, str]]:
    """Read every target's state, changing nothing: the states, and why others could not be read."""
    layout = Layout(env.deploy_to)
    results = run_everywhere(env, hosts, target_state.state_command(layout))
    states = {n: target_state.parse_state(r.stdout, layout) for n, r in results.items() if r.ok}
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
    make = backend_factory(env, dry_run=False, reporter=_Silent())
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
            }
        )
    return rows


def _last_entry_for(state: TargetState, release: str | None) -> dict[str, Any] | None:
    for entry in reversed(state.log):
        if release and entry.get("release") == release and entry.get("outcome") == "success":
            return dict(entry)
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
                    "hosts": [],
                    "on_disk": [],
                },
            )
            row["hosts"].append(name)
            if entry.get("release") in state.releases:
                row["on_disk"].append(name)
    return sorted(merged.values(), key=lambda r: (str(r["time"]), str(r["release"])))


def check(loaded: Loaded) -> list[dict[str, Any]]:
    """Reach every target and report whether a deploy could write there; change nothing."""
    env = loaded.env
    q = shlex.quote
    script = (
        f'p={q(env.deploy_to)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
        'if [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi; '
        "echo free_kb=$(df -Pk \"$p\" | awk 'NR==2 {print $4}'); echo user=$(id -un)"
    )
    rows = []
    results = run_everywhere(env, loaded.hosts, Command(script, timeout=30))
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


class _Silent:
    def emit(self, event: Event) -> None:
        del event


def is_interactive() -> bool:
    return sys.stdin.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")
