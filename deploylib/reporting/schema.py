"""The schema of ``--events FILE``: one pydantic model per event, documented in docs/events.md.

Every line is a JSON object with ``event`` (the kind, dotted), ``ts`` (UTC, ISO 8601 with
milliseconds) and ``deploy_id`` (the same on every line of one run: a file appended to by many
runs is split by it). A dry run marks each of its events ``"dry_run": true``. The models forbid
fields they do not name: a field added to an event without a model for it fails
``tests/test_events_schema.py``.

``validate_line`` checks one line; ``MODELS`` lists the models by kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str
    ts: datetime
    deploy_id: Annotated[str, Field(min_length=1)]
    #: the host an event is about (none: the whole run)
    host: str | None = None
    #: the step an event is about
    step: str | None = None
    #: the event for people, secrets masked
    message: str | None = None
    dry_run: Literal[True] | None = None


class Doubt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: ``switching`` (its switch was cut off), ``unread``, ``unreachable``, ``untouched``
    kind: str
    #: the other release it may be on
    other: str | None = None


class _Ending(_Event):
    """The last event of a run: where every host is, how it went, how long it took."""

    #: the release of each host (null: no release), as far as the run knows
    placement: dict[str, str | None] | None = None
    #: hosts whose release is not certain, and why
    doubts: dict[str, Doubt] | None = None
    #: ``success`` or ``failed``
    outcome: Literal["success", "failed"] | None = None
    #: the program's exit code: 0, 1 (failed, every host where it was), 3 (lock), 4 (split)
    exit_code: int | None = None
    #: seconds the run took
    seconds: float | None = None


class DeployStart(_Event):
    event: Literal["deploy.start"]
    release: str
    revision: str
    env: str
    hosts: list[str]


class DeployOk(_Ending):
    event: Literal["deploy.ok"]
    release: str
    #: the checks that passed on the new release
    verified: list[str] | None = None


class DeployFailed(_Ending):
    event: Literal["deploy.failed"]


class RollbackStart(_Event):
    event: Literal["rollback.start"]
    #: ``--to``, when given
    to: str | None
    hosts: list[str]


class RollbackOk(_Ending):
    event: Literal["rollback.ok"]
    #: the release gone back to ("" when the hosts went back to several)
    release: str


class RollbackFailed(_Ending):
    event: Literal["rollback.failed"]


class LockTaken(_Event):
    event: Literal["lock.taken"]
    #: hosts this run locked
    hosts: list[str]
    #: hosts whose lock the deploy this run runs inside holds (a deploy from a hook)
    inherited: list[str]


class LockReleased(_Event):
    event: Literal["lock.released"]
    hosts: list[str]


class LockWait(_Event):
    event: Literal["lock.wait"]
    #: how much of ``--lock-wait`` is left
    seconds_left: float


class StepStart(_Event):
    event: Literal["step.start"]


class StepOk(_Event):
    event: Literal["step.ok"]
    seconds: float
    #: 0: every command of the step succeeded
    exit_code: Literal[0] = 0


class StepFailed(_Event):
    event: Literal["step.failed"]
    #: the failing command's exit status (null: no command ended: a deadline, a lost link)
    exit_code: int | None = None


class CheckAttempt(_Event):
    event: Literal["check.attempt"]
    attempt: int
    ok: bool
    #: the step's last attempt: a failure here fails the step
    last: bool


class Operation(_Event):
    """A command, upload or check about to run (its line in ``message``)."""

    event: Literal["operation"]


class Progress(_Event):
    """A line of a long wait's progress, as the host reports it (a swarm update's tasks)."""

    event: Literal["progress"]


class Dry(_Event):
    """A dry run's command, as it would run."""

    event: Literal["dry"]


class WarningEvent(_Event):
    event: Literal["warning"]


class Revert(_Event):
    """A host is put back on the release it had."""

    event: Literal["revert"]


class Pause(_Event):
    event: Literal["pause"]


class Bake(_Event):
    event: Literal["bake"]


class Drain(_Event):
    """A blue-green slot that took traffic less than ``drain`` seconds ago is waited for."""

    event: Literal["drain"]


class Weigh(_Event):
    """A weighted canary: the new slot takes a share of the requests."""

    event: Literal["weigh"]


class SlotLive(_Event):
    """A blue-green slot took all of a host's traffic."""

    event: Literal["slot"]


class NotifySent(_Event):
    event: Literal["notify.sent"]


class NotifyFailed(_Event):
    event: Literal["notify.failed"]


MODELS: dict[str, type[_Event]] = {
    model.model_fields["event"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        DeployStart,
        DeployOk,
        DeployFailed,
        RollbackStart,
        RollbackOk,
        RollbackFailed,
        LockTaken,
        LockReleased,
        LockWait,
        StepStart,
        StepOk,
        StepFailed,
        CheckAttempt,
        Operation,
        Progress,
        Dry,
        WarningEvent,
        Revert,
        Pause,
        Bake,
        Drain,
        Weigh,
        SlotLive,
        NotifySent,
        NotifyFailed,
    )
}

_ANY: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        DeployStart
        | DeployOk
        | DeployFailed
        | RollbackStart
        | RollbackOk
        | RollbackFailed
        | LockTaken
        | LockReleased
        | LockWait
        | StepStart
        | StepOk
        | StepFailed
        | CheckAttempt
        | Operation
        | Progress
        | Dry
        | WarningEvent
        | Revert
        | Pause
        | Bake
        | Drain
        | Weigh
        | SlotLive
        | NotifySent
        | NotifyFailed,
        Field(discriminator="event"),
    ]
)


def validate_line(line: str) -> _Event:
    """The event on one line of an events file; raises ``pydantic.ValidationError``."""
    event: _Event = _ANY.validate_json(line)
    return event
