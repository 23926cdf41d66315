"""A plain function as a step: ``@step``, ``@step(once=True)``, ``@step(local=True)``; what it
returns or yields (command strings or operations) becomes its operations, each under the
deploy's lock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import overload

from deploylib.commands import Command, Operation, Probe, Upload
from deploylib.context import StepContext
from deploylib.errors import ConfigError
from deploylib.remote import lock as remote_lock
from deploylib.steps.base import Placement, Step

StepFunction = Callable[[StepContext], "Iterable[str | Operation] | str | Operation | None"]


@dataclass(frozen=True)
class CustomStep(Step):
    """A plain function ``fn(ctx)`` returning or yielding command strings or operations."""

    function: StepFunction | None = field(default=None, compare=False)

    def operations(self, ctx: StepContext) -> list[Operation]:
        assert self.function is not None
        produced = self.function(ctx)
        if produced is None:
            return []
        if isinstance(produced, str | Command | Upload | Probe):
            produced = [produced]
        ops: list[Operation] = []
        for item in produced:
            if isinstance(item, str):
                ops.append(ctx.command(item, description=self.name))
            elif isinstance(item, Command) and not item.guard:
                # a command of its own runs, like every other, only under the deploy's lock
                guard = remote_lock.guard_for(ctx.layout, ctx.guard_token or None)
                ops.append(replace(item, guard=guard))
            elif isinstance(item, Command | Upload | Probe):
                ops.append(item)
            else:
                raise ConfigError(
                    f"step {self.name!r} produced {item!r}; expected command strings or operations"
                )
        return ops


@overload
def step(function: StepFunction, /) -> CustomStep: ...
@overload
def step(
    *,
    name: str | None = None,
    once: bool = False,
    local: bool = False,
    roles: Sequence[str] = (),
) -> Callable[[StepFunction], CustomStep]: ...


def step(
    function: StepFunction | None = None,
    /,
    *,
    name: str | None = None,
    once: bool = False,
    local: bool = False,
    roles: Sequence[str] = (),
) -> CustomStep | Callable[[StepFunction], CustomStep]:
    """Make a plain function a step: ``@step`` or ``@step(once=True)`` / ``@step(local=True)``."""

    def wrap(fn: StepFunction) -> CustomStep:
        placement: Placement = "local" if local else "once" if once else "each"
        return CustomStep(
            name=name or fn.__name__, placement=placement, roles=tuple(roles), function=fn
        )

    return wrap(function) if function is not None else wrap
