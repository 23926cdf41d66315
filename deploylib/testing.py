"""Test helpers for deploylib and for users' own pipeline tests: no mocks, just a fake target.

    from deploylib.testing import FakeFleet, deploy_with_fakes

    fleet = FakeFleet()
    outcome, report = deploy_with_fakes(env, pipeline, fleet)
    assert fleet["local"].lines[...] == [...]

``FakeBackend`` records every operation and answers from responders you add; ``FakeFleet``
hands one to each host; ``environment`` builds an ``Environment`` without a deploy.toml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploylib.backends.fake import FakeBackend, Responder
from deploylib.config import Environment, NotifySettings, SSHSettings, StrategySettings
from deploylib.errors import DeployError
from deploylib.hosts import Host
from deploylib.pipeline import Pipeline
from deploylib.reporting import RecordingReporter
from deploylib.runner import Outcome, Runner
from deploylib.secrets import Redactor, Secret

FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
#: where fake deploys say the artifact is; nothing is written there
WORKDIR = "/tmp/deploylib-fake"
#: the lock token of fake deploys (random in real ones)
TOKEN = "0123456789abcdef"  # noqa: S105 - not a secret: fixed so tests are exact

__all__ = [
    "FIXED_TIME",
    "TOKEN",
    "WORKDIR",
    "FakeBackend",
    "FakeFleet",
    "RecordingReporter",
    "Responder",
    "deploy_with_fakes",
    "environment",
]


class FakeFleet:
    """One ``FakeBackend`` per host name, made on first use; ``controller`` runs local steps."""

    def __init__(self) -> None:
        self.backends: dict[str, FakeBackend] = {}
        self.controller = FakeBackend("controller")

    def __getitem__(self, name: str) -> FakeBackend:
        if name not in self.backends:
            self.backends[name] = FakeBackend(name)
        return self.backends[name]

    def backend_for(self, host: Host) -> FakeBackend:
        backend = self[host.name]
        backend.host = host
        return backend


def environment(
    project_dir: Path | str = "/project",
    *,
    app: str = "app",
    name: str = "test",
    deploy_to: str = "/srv/app",
    hosts: Sequence[Host | str] = ("local",),
    keep_releases: int = 5,
    shared_dirs: Sequence[str] = (),
    shared_files: Sequence[str] = (),
    variables: Mapping[str, str | Secret] | None = None,
    command_timeout: float = 60.0,
    step_timeout: float = 600.0,
    strategy: StrategySettings | None = None,
    **extra: Any,
) -> Environment:
    """An ``Environment`` as ``load_environment`` would resolve it, without files."""
    variables = dict(variables or {})
    redactor = Redactor(v.reveal() for v in variables.values() if isinstance(v, Secret))
    project = Path(project_dir)
    return Environment(
        project_dir=project,
        config_file=project / "deploy.toml",
        app=app,
        name=name,
        deploy_to=deploy_to,
        keep_releases=keep_releases,
        pipeline="web",
        shared_dirs=tuple(shared_dirs),
        shared_files=tuple(shared_files),
        hosts=tuple(h if isinstance(h, Host) else Host(name=h, address=h) for h in hosts),
        confirm=False,
        command_timeout=command_timeout,
        step_timeout=step_timeout,
        ssh=SSHSettings(),
        strategy=strategy or StrategySettings(),
        notify=NotifySettings(),
        variables=variables,
        redactor=redactor,
        **extra,
    )


def deploy_with_fakes(
    env: Environment,
    pipeline: Pipeline,
    fleet: FakeFleet | None = None,
    *,
    revision: str = "abc1234",
    clock: Any = None,
) -> tuple[Outcome | DeployError, RecordingReporter]:
    """Run a deploy against fake targets; returns the outcome (or the error) and the events."""
    fleet = fleet or FakeFleet()
    reporter = RecordingReporter()
    runner = Runner(
        env,
        pipeline,
        backend_for=fleet.backend_for,
        controller=fleet.controller,
        reporter=reporter,
        revision=revision,
        clock=clock or (lambda: FIXED_TIME),
        workdir=Path(WORKDIR),
        lock_token=TOKEN,
    )
    try:
        return runner.deploy(env.hosts), reporter
    except DeployError as error:
        return error, reporter
