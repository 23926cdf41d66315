"""What a step is: where it runs (``placement``, ``roles``), its hooks, the operations it turns a
``StepContext`` into, and what it means to a run (``moves_current``, ``ships_artifact``,
``retry``). A step runs nothing itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from deploylib.commands import Operation
from deploylib.context import StepContext

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
    that runs it: ``moves_current``, ``ships_artifact``, ``ends_with_lock_check`` and ``retry``."""

    #: the first operation points ``current`` at ``ctx.release`` (switch, rollback): once it
    #: ran, the target is on that release, or may be if it was cut off
    moves_current: ClassVar[bool] = False
    #: the step sends the build's artifact to the targets (push): the build must have made it
    ships_artifact: ClassVar[bool] = False
    #: the step works in the new release's directory on the target: it comes after push()
    needs_release: ClassVar[bool] = False
    #: the step's last command on a target ends by checking that the deploy still holds the
    #: lock there (push): when it ran on every target just before the switch, the fleet's
    #: lock check before the first batch is already made
    ends_with_lock_check: ClassVar[bool] = False

    name: str = "step"
    placement: Placement = "each"
    roles: tuple[str, ...] = ()
    before: tuple[Step, ...] = ()
    after: tuple[Step, ...] = ()

    @property
    def reads_manifest(self) -> bool:
        """The step needs each target's live manifest, read with the lock (a delta push)."""
        return False

    @property
    def retry(self) -> Retry | None:
        """Set for a step that checks the release (verify): its operations are repeated until
        they pass, and a release that is put back is checked again with it."""
        return None

    def operations(self, ctx: StepContext) -> list[Operation]:
        return []

    def schema_from(self, outputs: list[str]) -> tuple[str, ...] | None:
        """The migration state this step's operations printed (``outputs``: their stdout, in
        order), for the release log; None: the step reports none (see ``migrate(schema=)``)."""
        return None

    def templates(self) -> Iterable[str]:
        """Every template this step fills, for validation before any target is touched."""
        return ()
