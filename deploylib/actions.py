"""What each task does, as plain functions: load and validate, then hand over to the runner.

The Invoke tasks (``deploylib.tasks``) are thin wrappers over these; tests call them directly.
Every function validates everything before any target is touched and raises ``DeployError``s;
the command line maps them to exit codes.

Here: loading (config, pipeline, the hosts ``--hosts``/``--roles`` select), ``deploy`` and
``rollback``. How their run is wired (backends, revision, ``Runner``) is ``deploylib.wiring``; the
tasks that only read the fleet, and ``unlock``, are ``deploylib.inspection``; ``is_interactive``
is ``deploylib.terminal``'s. They are re-exported here, so ``actions.X`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError
from deploylib.hosts import Host
from deploylib.inspection import (
    check,
    read_states,
    release_history,
    run_everywhere,
    status_rows,
    unlock,
)
from deploylib.pipeline import fits, load_pipeline
from deploylib.reporting import Event, Reporter
from deploylib.runner import Clock, Outcome, utc_now
from deploylib.source import settle
from deploylib.terminal import is_interactive
from deploylib.wiring import REVISION_RE, Loaded, backend_factory, resolve_revision, runner_for

__all__ = [
    "REVISION_RE",
    "Loaded",
    "backend_factory",
    "check",
    "deploy",
    "is_interactive",
    "load",
    "read_states",
    "release_history",
    "resolve_revision",
    "rollback",
    "run_everywhere",
    "runner_for",
    "select_hosts",
    "status_rows",
    "unlock",
]


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
    fits(chosen, environment)
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


def deploy(
    loaded: Loaded,
    *,
    reporter: Reporter,
    revision: str | None = None,
    dry_run: bool = False,
    allow_dirty: bool = False,
    outputs: Sequence[Path] = (),
    clock: Clock = utc_now,
    lock_wait: float = 0.0,
) -> Outcome:
    """Settle what is shipped (``deploylib.source``: the revision, a changed working tree),
    then run the pipeline; ``allow_dirty`` deploys a working tree with uncommitted changes,
    ``outputs`` are files the deploy writes itself (``--events``), never such changes;
    ``lock_wait``: seconds to wait for locks another deploy holds (``--lock-wait``)."""
    source = settle(
        loaded.env,
        loaded.pipeline,
        revision,
        allow_dirty=allow_dirty,
        dry_run=dry_run,
        outputs=outputs,
    )
    for warning in source.warnings:
        reporter.emit(Event("warning", warning, data={"dry_run": True} if dry_run else {}))
    runner = runner_for(
        loaded,
        reporter=reporter,
        dry_run=dry_run,
        revision=source.revision,
        clock=clock,
        lock_wait=lock_wait,
    )
    return runner.deploy(loaded.hosts)


#: the longest ``--lock-wait``: a day
MAX_LOCK_WAIT = 86400.0


def lock_wait_of(value: str | float | None) -> float:
    """``--lock-wait S`` as seconds (0 when not given)."""
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {value!r}", key="--lock-wait") from None
    if not 0 <= seconds <= MAX_LOCK_WAIT:  # also refuses nan
        raise ConfigError(f"must be 0 to {MAX_LOCK_WAIT:g} seconds: {value!r}", key="--lock-wait")
    return seconds


def rollback(
    loaded: Loaded,
    *,
    reporter: Reporter,
    to: str | None = None,
    verify: bool = True,
    clock: Clock = utc_now,
    accept_schema: bool = False,
) -> Outcome:
    """Undo the last deploy, or put every host on ``to``; ``verify=False`` skips the checks;
    ``accept_schema`` goes back even to a release that does not know every live migration."""
    runner = runner_for(loaded, reporter=reporter, clock=clock)
    return runner.rollback(loaded.hosts, to, verify=verify, accept_schema=accept_schema)
