"""The steps of a blue-green switch on one target, built per target by ``blue_green``: start a
release on a slot, weigh traffic between the slots, go live on a slot, stop a slot.

Each reads the slot it works on from the context (``{port}``, ``{slot}``) and the proxy settings
from the environment's strategy; the slot record each one writes is given to it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from deploylib.commands import Operation
from deploylib.context import StepContext
from deploylib.remote import release as remote_release
from deploylib.remote import slots as remote_slots
from deploylib.slots import SlotState
from deploylib.steps.base import Step
from deploylib.steps.builtin import Switch

#: what a strategy without its own proxy commands runs
DEFAULT_CHECK = "nginx -t -q"
DEFAULT_RELOAD = "nginx -s reload"


def proxy_operation(
    ctx: StepContext,
    servers: tuple[tuple[int, int | None], ...],
    description: str,
    backup: tuple[int, ...] = (),
) -> Operation:
    """Point the proxy at ``servers`` (port, weight) on the target of ``ctx``, with ``backup``
    ports that take requests only when those fail. The proxy's check and reload get the
    env-file variables in their environment, as every user command does (a reload through a
    proxy's API may need its token); never on their command line."""
    strategy = ctx.env.strategy
    assert strategy.upstream_file
    command = remote_slots.proxy_command(
        ctx.layout,
        ctx.path(strategy.upstream_file),
        servers,
        check=ctx.shell(strategy.proxy_check or DEFAULT_CHECK),
        reload=ctx.shell(strategy.proxy_reload or DEFAULT_RELOAD),
        token=ctx.lock_token or None,
        description=description,
        backups=backup,
    )
    return replace(command, env=dict(ctx.env.variables))


def staged(ctx: StepContext, slots: SlotState, change: Operation) -> list[Operation]:
    """``change`` to a slot, its record ``slots`` written first and put in place after it: a
    record that cannot be written (a full disk) leaves the slot as it was, and a change that
    fails leaves the record as it was."""
    token = ctx.lock_token or None
    return [
        remote_slots.stage_slots_command(ctx.layout, slots, token),
        change,
        remote_slots.commit_slots_command(ctx.layout, token),
    ]


@dataclass(frozen=True)
class StartOnSlot(Step):
    """Stop whatever runs on the slot, record that ``ctx.release`` runs there, start it."""

    name: str = "start"
    switch: Switch = field(default_factory=Switch)
    slots: SlotState = field(default_factory=SlotState)

    def operations(self, ctx: StepContext) -> list[Operation]:
        stop, start = self.switch.slot_operations(ctx)
        return [*staged(ctx, self.slots, stop), start]


@dataclass(frozen=True)
class StopSlot(Step):
    """Stop what runs on the slot (a release that is not wanted there), and record it."""

    name: str = "stop"
    switch: Switch = field(default_factory=Switch)
    slots: SlotState = field(default_factory=SlotState)

    def operations(self, ctx: StepContext) -> list[Operation]:
        return staged(ctx, self.slots, self.switch.stop_operation(ctx))


@dataclass(frozen=True)
class Weigh(Step):
    """Share the traffic between the slots by ``servers``' weights (a weighted canary)."""

    name: str = "weigh"
    servers: tuple[tuple[int, int | None], ...] = ()

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [proxy_operation(ctx, self.servers, "proxy weights")]


@dataclass(frozen=True)
class GoLive(Step):
    """All of the proxy's traffic to the slot of ``ctx``, ``slots`` recorded, and ``current`` at
    ``ctx.release``. The proxy switch comes first: it is what makes the release live (a target
    whose proxy switch failed is still on the release it had, proxy and ``current``); the record
    follows it at once, so that it names the slot the proxy sends to even when ``current``
    cannot be moved and the target cannot be put back either."""

    moves_current: ClassVar[bool] = True

    name: str = "switch"
    slots: SlotState = field(default_factory=SlotState)
    #: ports that take requests only when the slot's fail (see ``proxy_operation``)
    backup: tuple[int, ...] = ()

    def operations(self, ctx: StepContext) -> list[Operation]:
        token = ctx.lock_token or None
        record = remote_slots.record_slots_command(ctx.layout, self.slots, token)
        port = int(ctx.values["port"])
        return [
            proxy_operation(ctx, ((port, None),), "proxy switch", self.backup),
            record,
            remote_release.switch_command(
                ctx.layout, ctx.release, token, complete=not ctx.restoring
            ),
        ]
