"""The switch of an environment with ``orchestrator = "swarm"``: the release runs as a Docker
Swarm service, driven from the environment's one host, a swarm manager (``remote.swarm``).

``ServiceSwitch`` is a ``Switch`` whose restart and slot start make the service run the
release and follow swarm until it does, and whose slot stop takes a release that never went
live off the service. In place (strategy ``all``: the service's own published ports or the
routing mesh take the requests) ``current`` moves first, then the service is updated from
it; on blue-green slots (nginx on the manager in front of tasks on the host's network) the
service's tasks get the idle slot's ``PORT``, the pipeline's checks run against it, and the
proxy switch follows. ``ServiceRollback`` is how a target goes back: ``current`` back, then the
service too (``docker service rollback`` when its previous spec is that release's)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from deploylib.commands import Command, Operation
from deploylib.context import StepContext
from deploylib.remote import release as remote_release
from deploylib.remote import swarm
from deploylib.steps.base import Step
from deploylib.steps.builtin import Rollback, Switch

#: what the switch's restart, start and stop say they do (never run: the scripts are built
#: per target from the environment's ``[swarm]``)
WHAT = "docker service (deploylib.recipes.service)"


@dataclass(frozen=True)
class ServiceOptions:
    """The service's options a pipeline gives: ``docker service create`` options, the
    containers' command, and their health check."""

    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    health: swarm.HealthCheck | None = None

    def service(self, ctx: StepContext) -> swarm.Service:
        settings = ctx.env.swarm
        deadline = settings.timeout or max(1.0, ctx.env.command_timeout - 10)
        return swarm.Service(
            deadline=math.ceil(deadline),
            name=settings.service or ctx.env.app,
            app=ctx.env.app,
            settings=settings,
            args=self.args,
            command=self.command,
            health=self.health,
        )

    def converge(self, ctx: StepContext, cwd: str, port: int | None, what: str) -> Command:
        """The service made to run ``ctx.release`` (from its directory ``cwd``), followed."""
        login = ctx.registry_login() if ctx.image else None
        script = swarm.converge_script(self.service(ctx), ctx.release, port, login)
        command = ctx.command(_literal(script), cwd=cwd, description=what, inherit_lock=False)
        # the release's variables reach docker from its .env.docker, in a subshell, for the
        # create or update only: none of them is in the environment of the script's other
        # docker commands; the registry's user name is, when there is one
        command = replace(command, env=dict(login.env) if login else {}, progress=True)
        return replace(command, stdin=login.password) if login else command

    def stop(self, ctx: StepContext, port: int | None) -> Command:
        script = swarm.stop_script(self.service(ctx), ctx.release, port)
        command = ctx.command(
            _literal(script), cwd=ctx.env.deploy_to, description="stop", inherit_lock=False
        )
        return replace(command, env={}, progress=True)


def _literal(script: str) -> str:
    """``script`` as a template that fills to itself: its braces are no placeholders."""
    return script.replace("{", "{{").replace("}", "}}")


def _port(ctx: StepContext) -> int | None:
    port = ctx.values.get("port")
    return int(port) if port else None


@dataclass(frozen=True)
class ServiceSwitch(Switch):
    """``switch()`` for a swarm service (see the module's docstring)."""

    restart: str | None = WHAT
    start: str | None = WHAT
    stop: str | None = WHAT
    options: ServiceOptions = field(default_factory=ServiceOptions)

    def restart_operations(self, ctx: StepContext) -> list[Operation]:
        return [self.options.converge(ctx, ctx.layout.current, None, "restart")]

    def slot_operations(self, ctx: StepContext) -> list[Operation]:
        # the stop finds nothing to do on the idle slot (swarm stopped the tasks there when it
        # last updated them) unless the service runs this very release there
        port = _port(ctx)
        return [
            self.stop_operation(ctx),
            self.options.converge(ctx, ctx.release_path, port, "start"),
        ]

    def stop_operation(self, ctx: StepContext) -> Operation:
        return self.options.stop(ctx, _port(ctx))

    def undo_step(self) -> Step | None:
        return ServiceStop(options=self.options)

    def revert(self) -> ServiceRollback:
        return ServiceRollback(name="rollback", options=self.options)

    def templates(self) -> Iterable[str]:
        return []


@dataclass(frozen=True)
class ServiceRollback(Rollback):
    """``current`` back at ``ctx.release``, then the service made to run it."""

    restart: str | None = WHAT
    options: ServiceOptions = field(default_factory=ServiceOptions)

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [
            remote_release.switch_command(
                ctx.layout, ctx.release, ctx.lock_token or None, complete=not ctx.restoring
            ),
            self.options.converge(ctx, ctx.layout.current, None, "restart"),
        ]

    def templates(self) -> Iterable[str]:
        return []


@dataclass(frozen=True)
class ServiceStop(Step):
    """The release taken off the service: back to its previous spec, or the service removed
    when this deploy made it (a first deploy put back to no release)."""

    name: str = "stop"
    options: ServiceOptions = field(default_factory=ServiceOptions)

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [self.options.stop(ctx, _port(ctx))]
