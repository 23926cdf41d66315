"""The pipeline steps: each turns a ``StepContext`` into operations, and runs nothing itself.

``build`` runs once on this machine; ``push``, ``run``, ``switch``, ``verify`` and ``rollback``
run on every target; ``migrate`` (and ``run(once=True)``) on one target. A custom step is a
function decorated ``@step``. Every step takes ``before=`` and ``after=`` hooks: steps, or
strings that become ``run(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal, overload

from deploylib.checks import Check
from deploylib.commands import Command, Operation, Probe, Upload
from deploylib.context import StepContext
from deploylib.errors import ConfigError
from deploylib.remote import lock as remote_lock
from deploylib.remote import release as remote_release

Placement = Literal["local", "each", "once"]


@dataclass(frozen=True)
class Retry:
    """How a step's operations are repeated until they all pass in one attempt."""

    attempts: int
    wait: float
    deadline: float | None


@dataclass(frozen=True)
class Step:
    """Base of every step. ``placement`` says where it runs: this machine, each target, or one;
    ``roles``, on which targets (with ``once``: the first target with one of them, else the
    first target).

    What a step means to a run is declared here, not known from its class or name by the code
    that runs it: ``moves_current``, ``ships_artifact`` and ``retry``."""

    #: the first operation points ``current`` at ``ctx.release`` (switch, rollback): once it
    #: ran, the target is on that release, or may be if it was cut off
    moves_current: ClassVar[bool] = False
    #: the step sends the build's artifact to the targets (push): the build must have made it
    ships_artifact: ClassVar[bool] = False

    name: str = "step"
    placement: Placement = "each"
    roles: tuple[str, ...] = ()
    before: tuple[Step, ...] = ()
    after: tuple[Step, ...] = ()

    @property
    def retry(self) -> Retry | None:
        """Set for a step that checks the release (verify): its operations are repeated until
        they pass, and a release that is put back is checked again with it."""
        return None

    def operations(self, ctx: StepContext) -> list[Operation]:
        return []

    def templates(self) -> Iterable[str]:
        """Every template this step fills, for validation before any target is touched."""
        return ()

    def hooked(self, before: HookSpec = None, after: HookSpec = None) -> Step:
        """A copy of this step with more hooks."""
        return replace(
            self, before=self.before + as_steps(before), after=self.after + as_steps(after)
        )


HookSpec = Step | str | Sequence[Step | str] | None


def as_steps(spec: Step | str | Sequence[Step | str] | None) -> tuple[Step, ...]:
    if spec is None:
        return ()
    if isinstance(spec, Step | str):
        spec = [spec]
    steps: list[Step] = []
    for item in spec:
        if isinstance(item, str):
            steps.append(run(item))
        elif isinstance(item, Step):
            steps.append(item)
        else:
            raise ConfigError(f"a hook must be a step or a command string, not {item!r}")
    return tuple(steps)


@dataclass(frozen=True)
class Build(Step):
    command: str = ""
    cwd: str | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        cwd = ctx.shell(self.cwd) if self.cwd else str(ctx.env.project_dir)
        return [ctx.command(self.command, cwd=cwd, description="build")]

    def templates(self) -> Iterable[str]:
        return [self.command, *([self.cwd] if self.cwd else [])]


@dataclass(frozen=True)
class Push(Step):
    ships_artifact: ClassVar[bool] = True

    def operations(self, ctx: StepContext) -> list[Operation]:
        layout, token = ctx.layout, ctx.lock_token or None
        return [
            remote_release.prepare_command(
                layout, token, ctx.artifact_bytes, has_env=bool(ctx.env.variables)
            ),
            remote_release.upload_artifact(layout, ctx.artifact, ctx.release),
            remote_release.unpack_command(
                layout,
                ctx.release,
                ctx.revision,
                ctx.env.shared_dirs,
                ctx.env.shared_files,
                variables=ctx.env.variables,
                token=token,
            ),
        ]


@dataclass(frozen=True)
class Run(Step):
    command: str = ""
    cwd: str | None = None
    timeout: float | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [
            ctx.command(self.command, cwd=self.cwd, timeout=self.timeout, description=self.name)
        ]

    def templates(self) -> Iterable[str]:
        return [self.command, *([self.cwd] if self.cwd else [])]


@dataclass(frozen=True)
class Switch(Step):
    """Move ``current`` to the new release, then run ``restart`` (from the new ``current``)."""

    moves_current: ClassVar[bool] = True

    restart: str | None = None
    start: str | None = None
    stop: str | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        switch = remote_release.switch_command(ctx.layout, ctx.release, ctx.lock_token or None)
        return [switch, *self.restart_operations(ctx)]

    def restart_operations(self, ctx: StepContext) -> list[Operation]:
        if not self.restart:
            return []
        return [
            ctx.command(
                self.restart, cwd=ctx.layout.current, description="restart", inherit_lock=False
            )
        ]

    def templates(self) -> Iterable[str]:
        return [t for t in (self.restart, self.start, self.stop) if t]


@dataclass(frozen=True)
class Verify(Step):
    checks: tuple[Check, ...] = ()
    attempts: int = 10
    wait: float = 1.0
    deadline: float | None = None

    @property
    def retry(self) -> Retry:
        return Retry(self.attempts, self.wait, self.deadline)

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [check.operation(ctx) for check in self.checks]

    def templates(self) -> Iterable[str]:
        for check in self.checks:
            yield from check.templates()


@dataclass(frozen=True)
class Rollback(Step):
    """Switch back to ``ctx.release`` (the rollback target) and restart there.

    In ``Pipeline(on_failure=rollback(restart=...))`` it says how a failed deploy is put back;
    without ``restart`` the switch step's restart is used.
    """

    moves_current: ClassVar[bool] = True

    restart: str | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        # putting back the release that was live needs only its directory; a rollback target
        # must be complete
        ops: list[Operation] = [
            remote_release.switch_command(
                ctx.layout, ctx.release, ctx.lock_token or None, complete=not ctx.restoring
            )
        ]
        if self.restart:
            ops.append(
                ctx.command(
                    self.restart, cwd=ctx.layout.current, description="restart", inherit_lock=False
                )
            )
        return ops

    def templates(self) -> Iterable[str]:
        return [self.restart] if self.restart else []


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


# ---------------------------------------------------------------------------- the DSL


def build(
    command: str, *, cwd: str | None = None, before: HookSpec = None, after: HookSpec = None
) -> Step:
    """Run ``command`` once on this machine; it must write the artifact to ``{artifact}``."""
    return Build(
        name="build",
        placement="local",
        command=command,
        cwd=cwd,
        before=as_steps(before),
        after=as_steps(after),
    )


def push(*, before: HookSpec = None, after: HookSpec = None) -> Step:
    """Upload the artifact, unpack it into ``{release_path}``, link shared paths, write REVISION."""
    return Push(name="push", before=as_steps(before), after=as_steps(after))


def run(
    command: str,
    *,
    cwd: str | None = None,
    once: bool = False,
    roles: Sequence[str] = (),
    timeout: float | None = None,
    name: str = "run",
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Run ``command`` on every target (or one, with ``once=True``; or those with ``roles``)."""
    _check_timeout("run", timeout)
    return Run(
        name=name,
        placement="once" if once else "each",
        roles=tuple(roles),
        command=command,
        cwd=cwd,
        timeout=timeout,
        before=as_steps(before),
        after=as_steps(after),
    )


def migrate(
    command: str,
    *,
    cwd: str | None = "{release_path}",
    timeout: float | None = None,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Run ``command`` once per deploy: on the first target with role ``db``, else the first."""
    _check_timeout("migrate", timeout)
    return Run(
        name="migrate",
        placement="once",
        roles=("db",),
        command=command,
        cwd=cwd,
        timeout=timeout,
        before=as_steps(before),
        after=as_steps(after),
    )


def switch(
    *,
    restart: str | None = None,
    start: str | None = None,
    stop: str | None = None,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Point ``current`` at the new release atomically, then ``restart`` the app."""
    return Switch(
        name="switch",
        restart=restart,
        start=start,
        stop=stop,
        before=as_steps(before),
        after=as_steps(after),
    )


def verify(
    *checks: Check,
    attempts: int = 10,
    wait: float = 1.0,
    deadline: float | None = None,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Retry ``checks`` until all pass: ``attempts`` times, ``wait`` s apart, by ``deadline``."""
    if not checks:
        raise ConfigError("verify() needs at least one check: http(...), tcp(...) or command(...)")
    if attempts < 1 or wait < 0 or (deadline is not None and deadline <= 0):
        raise ConfigError("verify(): attempts must be >= 1, wait >= 0 and deadline > 0")
    return Verify(
        name="verify",
        checks=tuple(checks),
        attempts=attempts,
        wait=wait,
        deadline=deadline,
        before=as_steps(before),
        after=as_steps(after),
    )


def rollback(
    *, restart: str | None = None, before: HookSpec = None, after: HookSpec = None
) -> Step:
    """Switch back to the previous release (see ``Rollback``)."""
    return Rollback(
        name="rollback", restart=restart, before=as_steps(before), after=as_steps(after)
    )


def _check_timeout(what: str, timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ConfigError(f"{what}(timeout={timeout!r}): a timeout is a number of seconds > 0")


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
