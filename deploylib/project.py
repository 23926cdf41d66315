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
    from deploylib.hosts import Host
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
    #: a container release: the image current runs (docs/containers.md)
    image: str | None = None


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
    #: a container release's deploy: its image
    image: str | None = None


@dataclass(frozen=True)
class HostCheck:
    """Whether a deploy could write to one host (``check``); ``problems`` says why not."""

    host: str
    ok: bool
    user: str | None
    writable: bool
    free_mb: int | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class HostRun:
    """How a command went on one host (``exec``): its exit status and its output, line by
    line, with secrets masked and control characters made visible. ``error`` is deploylib's
    own word when it gave up on the host (unreachable: ``exit_code`` 255; timed out: 124)."""

    host: str
    exit_code: int
    stdout: tuple[str, ...]
    stderr: tuple[str, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


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

    def exec(
        self,
        env: str,
        command: str,
        *,
        hosts: Sequence[str] | None = None,
        roles: Sequence[str] | None = None,
        once: bool = False,
        timeout: float | None = None,
        on_line: Callable[[str, str, str], None] | None = None,
    ) -> list[HostRun]:
        """Run ``command`` (one shell script, as given) in ``current`` on the chosen hosts
        with the release's environment, as ``deploylib exec`` does; one ``HostRun`` per host,
        in the environment's order. ``on_line(host, stream, line)`` gets each line as it
        arrives. A failing command raises nothing: look at ``exit_code``. Ctrl-C stops the
        command on every host, then raises ``KeyboardInterrupt``."""
        from deploylib import oneoff
        from deploylib.remote.oneoff import command_of
        from deploylib.streaming import HostLines, Streamed

        script = command_of(command)
        environment, chosen = self._load_hosts(env, hosts, roles)
        seconds = oneoff.timeout_of(environment, timeout)
        kept: dict[tuple[str, str], list[str]] = {}

        def keep(host: str, stream: str, line: str) -> None:
            kept.setdefault((host, stream), []).append(line)
            if on_line is not None:
                on_line(host, stream, line)

        lines = HostLines(environment.redactor, None, None, on_line=keep)
        streamed = oneoff.exec_on(environment, chosen, script, lines, once=once, timeout=seconds)
        if streamed.interrupted:
            raise KeyboardInterrupt
        runs = []
        for name, result in streamed.results.items():
            gave_up = result.unreachable or result.timed_out
            runs.append(
                HostRun(
                    host=name,
                    exit_code=Streamed.status_of(result),
                    stdout=tuple(kept.get((name, "stdout"), ())),
                    stderr=tuple(kept.get((name, "stderr"), ())),
                    error=lines.clean(result.stderr.strip()) if gave_up else None,
                )
            )
        return runs

    # ------------------------------------------------------------------ loading

    def _load_hosts(
        self, env: str, hosts: Sequence[str] | None, roles: Sequence[str] | None
    ) -> tuple[Environment, tuple[Host, ...]]:
        """The environment and the hosts ``hosts``/``roles`` choose; no pipeline is read."""
        from deploylib.actions import select_hosts

        _refuse_strings(hosts, roles)
        environment = self._environment(env)
        selected = select_hosts(
            environment,
            ",".join(hosts) if hosts is not None else None,
            ",".join(roles) if roles is not None else None,
        )
        return environment, selected

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

        _refuse_strings(hosts, roles)
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


def _refuse_strings(hosts: Sequence[str] | None, roles: Sequence[str] | None) -> None:
    for key, names in (("hosts", hosts), ("roles", roles)):
        if isinstance(names, str):  # a string is a sequence of letters: say so
            raise ConfigError(f"a list of names, not the string {names!r}", key=key)


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


__all__ = ["HostCheck", "HostRun", "HostStatus", "Project", "ReleaseRecord"]
