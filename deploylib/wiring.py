"""How a task's run is put together: what it works on (``Loaded``: an environment, a pipeline,
the chosen hosts), the backend that works on each host, and the ``Runner`` of a deploy or
rollback over real targets. The revision a deploy records is ``deploylib.source``'s
(``resolve_revision`` is re-exported here).

``deploylib.actions`` (deploy, rollback) and ``deploylib.inspection`` (status, releases, check,
unlock) both reach hosts through ``backend_factory``; the test kit (``deploylib.testing``) builds
its ``Runner`` over fake backends instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib.backends.base import Backend
from deploylib.backends.local import LocalBackend
from deploylib.backends.printer import PrinterBackend
from deploylib.config import Environment
from deploylib.hosts import LOCAL, Host
from deploylib.pipeline import Pipeline
from deploylib.reporting import Event, Reporter
from deploylib.repository import deployer
from deploylib.runner import Clock, Runner, utc_now
from deploylib.source import REVISION_RE, resolve_revision

if TYPE_CHECKING:
    from deploylib.backends.ssh.host_keys import KnownHostsFile

__all__ = ["REVISION_RE", "Loaded", "backend_factory", "resolve_revision", "runner_for"]


@dataclass(frozen=True)
class Loaded:
    env: Environment
    pipeline: Pipeline
    hosts: tuple[Host, ...]


def backend_factory(
    env: Environment, *, dry_run: bool, reporter: Reporter
) -> Callable[[Host], Backend]:
    def emit(host: str, line: str) -> None:
        reporter.emit(Event("dry", line, host=host, data={"dry_run": True}))

    # known_hosts, read once for all the run's SSH connections (made on the first)
    known: list[KnownHostsFile] = []
    # at most `parallel` SSH handshakes at once, opened ahead or by a command
    handshakes = threading.BoundedSemaphore(env.ssh.parallel)

    def make(host: Host) -> Backend:
        if dry_run:
            return PrinterBackend(host, emit)
        if host.is_local:
            return LocalBackend(host, default_timeout=env.command_timeout)
        # imported here: fabric and paramiko cost a local deploy nothing
        from deploylib.backends.ssh import SSHBackend
        from deploylib.backends.ssh.host_keys import KnownHostsFile

        if not known:
            known.append(KnownHostsFile())
        return SSHBackend(
            host,
            env.ssh,
            project_dir=env.project_dir,
            default_timeout=env.command_timeout,
            known=known[0],
            handshakes=handshakes,
        )

    return make


def runner_for(
    loaded: Loaded,
    *,
    reporter: Reporter,
    dry_run: bool = False,
    revision: str = "unknown",
    clock: Clock = utc_now,
    lock_wait: float = 0.0,
) -> Runner:
    """The ``Runner`` of one deploy or rollback: every host's backend from ``backend_factory``,
    and this machine's (printing too, in a dry run) as the controller that runs local steps."""
    factory = backend_factory(loaded.env, dry_run=dry_run, reporter=reporter)
    return Runner(
        loaded.env,
        loaded.pipeline,
        backend_for=factory,
        controller=factory(LOCAL),
        reporter=reporter,
        revision=revision,
        clock=clock,
        lock_wait=lock_wait,
        user=deployer(loaded.env.project_dir),
    )
