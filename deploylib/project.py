"""``Project``: deploylib from Python. The same tasks as the command line (deploy, rollback,
status, releases, check), with the same meaning, returning typed results and raising the typed
errors of ``deploylib.errors`` (each with the ``exit_code`` the command line would exit with)
instead of printing.

A project is a directory with ``deploy.toml``, env files and ``pipelines/``; or settings shaped
like deploy.toml and ``Pipeline`` objects built in code, checked exactly as the files are::

    from deploylib import Project

    project = Project("path/to/app")
    outcome = project.deploy("staging")
    for host in project.status("staging"):
        print(host.host, host.current)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from deploylib.errors import ConfigError
from deploylib.pipeline import Pipeline

if TYPE_CHECKING:  # the machinery is imported when a task runs
    from deploylib.config import Environment
    from deploylib.reporting import Reporter
    from deploylib.runner import Outcome
    from deploylib.wiring import Loaded

T = TypeVar("T")


@dataclass(frozen=True)
class HostStatus:
    """Where one host is (``status``). A host that could not be read has ``error`` set and
    nothing else (the command line exits 1 for it)."""

    host: str
    current: str | None
    error: str | None = None
    revision: str | None = None
    deployed_at: str | None = None
    deployed_by: str | None = None
    locked: bool | None = None
    lock_owner: Mapping[str, Any] | None = None
    lock_age: int | None = None
    #: why the lock looks abandoned (``unlock`` removes it), or None
    lock_stale: str | None = None
    releases: tuple[str, ...] = ()
    #: why the release log cannot say what to roll back to, or None
    history_problem: str | None = None
    #: the fleet runs one release
    consistent: bool = True
    #: this host runs another release than most hosts
    differs: bool = False


@dataclass(frozen=True)
class ReleaseRecord:
    """One event of the fleet's history (``releases``): a deploy or rollback and its outcome
    (``success``, ``failed``, ``rolled_back``), with the hosts whose log has it."""

    time: str | None
    event: str | None
    release: str | None
    revision: str | None
    outcome: str | None
    user: str | None
    error: str | None
    hosts: tuple[str, ...]
    #: the hosts that still have the release on disk
    on_disk: tuple[str, ...]


@dataclass(frozen=True)
class HostCheck:
    """Whether a deploy could write to one host (``check``); ``problems`` says why not."""

    host: str
    ok: bool
    user: str | None
    writable: bool
    free_mb: int | None
    problems: tuple[str, ...]


class Project:
    """A deploylib project, from its directory or from settings and pipelines built in code.

    ``Project(root)`` reads ``root/deploy.toml`` (``config=`` names another file) and
    ``root/pipelines/``. ``Project(root, settings={...}, pipelines={"web": Pipeline(...)})``
    takes the settings as deploy.toml would hold them, and the pipelines by name; env files
    are still read from ``root``. Nothing is read until a task runs; every task validates the
    whole configuration and pipeline first and raises ``ConfigError`` (exit code 2) before any
    host is touched.
    """

    def __init__(
        self,
        root: str | Path = ".",
        *,
        config: str | Path = "deploy.toml",
        settings: Mapping[str, Any] | None = None,
        pipelines: Mapping[str, Pipeline] | None = None,
    ) -> None:
        if settings is not None and not isinstance(settings, Mapping):
            raise ConfigError("settings: a mapping of deploy.toml's keys", key="settings")
        self.root = Path(root).absolute()
        self.config_file = self.root / config
        self.settings = dict(settings) if settings is not None else None
        self.pipelines = dict(pipelines or {})

    # ------------------------------------------------------------------ tasks

    def deploy(
        self,
        env: str,
        *,
        pipeline: str | None = None,
        hosts: Sequence[str] | None = None,
        roles: Sequence[str] | None = None,
        revision: str | None = None,
        dry_run: bool = False,
        allow_dirty: bool = False,
        reporter: Reporter | None = None,
    ) -> Outcome:
        """Build, push, switch and verify a release; every host back where it was on failure.

        In a git work tree ``revision`` (default ``HEAD``) must name a commit, recorded by its
        full id; a build that packs a working tree with uncommitted changes is refused unless
        ``allow_dirty``. Raises ``DeployFailed`` (exit 1: the fleet is back on one release),
        ``LockHeld`` or ``LockLost`` (3), ``FleetInconsistent`` (4) or ``ConfigError`` (2)."""
        from deploylib import actions
        from deploylib.reporting import SilentReporter

        loaded = self._load(env, pipeline, hosts, roles)
        quiet = reporter or SilentReporter()
        return actions.deploy(
            loaded, reporter=quiet, revision=revision, dry_run=dry_run, allow_dirty=allow_dirty
        )

    def rollback(
        self,
        env: str,
        *,
        to: str | None = None,
        verify: bool = True,
        accept_schema: bool = False,
        reporter: Reporter | None = None,
    ) -> Outcome:
        """Undo the last deploy (each host it changed back to what it ran before), or put
        every host on ``to``. Checks that fail on the release gone back to raise
        ``DeployFailed`` while it stays live; ``verify=False`` skips them. A release that does
        not know every migration of the live database is refused (``DeployFailed``, nothing
        changed) unless ``accept_schema`` (the command line's ``--yes``)."""
        from deploylib import actions
        from deploylib.reporting import SilentReporter

        loaded = self._load(env, None, None, None)
        quiet = reporter or SilentReporter()
        return actions.rollback(
            loaded, reporter=quiet, to=to, verify=verify, accept_schema=accept_schema
        )

    def status(self, env: str) -> list[HostStatus]:
        """Where every host is; changes nothing."""
        from deploylib import inspection

        environment = self._environment(env)
        rows = inspection.status_rows(environment, environment.hosts)
        return [_typed(HostStatus, environment.redactor.redact, row) for row in rows]

    def releases(self, env: str) -> list[ReleaseRecord]:
        """The fleet's history, oldest first; changes nothing. A host that cannot be read
        raises ``StepFailed``."""
        from deploylib import inspection

        environment = self._environment(env)
        rows = inspection.release_history(environment, environment.hosts)
        return [_typed(ReleaseRecord, environment.redactor.redact, row) for row in rows]

    def check(self, env: str, *, pipeline: str | None = None) -> list[HostCheck]:
        """Validate the configuration and the pipeline, reach every host; change nothing."""
        from deploylib import inspection

        loaded = self._load(env, pipeline, None, None)
        rows = inspection.check(loaded)
        return [_typed(HostCheck, loaded.env.redactor.redact, row) for row in rows]

    # ------------------------------------------------------------------ loading

    def _environment(self, env: str) -> Environment:
        from deploylib.config.loading import environment_from, load_environment

        if self.settings is None:
            return load_environment(self.config_file, env)
        return environment_from(self.settings, self.config_file, env)

    def _load(
        self,
        env: str,
        pipeline: str | None,
        hosts: Sequence[str] | None,
        roles: Sequence[str] | None,
    ) -> Loaded:
        from deploylib.actions import select_hosts
        from deploylib.pipeline import load_pipeline
        from deploylib.wiring import Loaded

        for key, names in (("hosts", hosts), ("roles", roles)):
            if isinstance(names, str):  # a string is a sequence of letters: say so
                raise ConfigError(f"a list of names, not the string {names!r}", key=key)

        environment = self._environment(env)
        name = pipeline or environment.pipeline
        if name in self.pipelines:
            chosen = self.pipelines[name]
            chosen.name = chosen.name or name
            chosen.validate(f"pipeline {name!r}")
        elif self.pipelines and self.settings is not None:
            known = ", ".join(sorted(self.pipelines))
            raise ConfigError(f"pipeline {name!r} not given (given: {known})", key="pipeline")
        else:
            chosen, _ = load_pipeline(environment.project_dir, name)
        selected = select_hosts(
            environment,
            ",".join(hosts) if hosts is not None else None,
            ",".join(roles) if roles is not None else None,
        )
        return Loaded(environment, chosen, selected)


def _typed(kind: type[T], redact: Callable[[str], str], row: Mapping[str, Any]) -> T:
    """A result row as ``kind``: its fields taken from the row (lists become tuples), every
    string from a host passed through the redactor."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return tuple(clean(v) for v in value)
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        return value

    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{k: clean(v) for k, v in row.items() if k in names})


__all__ = ["HostCheck", "HostStatus", "Project", "ReleaseRecord"]
