"""The exception tree of deploylib.

    DeployError                 base of everything deploylib raises on purpose
    ├── ConfigError             bad deploy.toml, env file, pipeline or argument    exit 2
    ├── LockHeld                another deploy holds a target's lock               exit 3
    ├── StepFailed              a command or upload failed on a target             (inside a deploy)
    │   └── VerifyFailed        a health check gave up                             (inside a deploy)
    └── PlacedError             ends a run that reached the targets: where each is
        ├── LockLost            this deploy's lock was removed or taken over       exit 3
        ├── DeployFailed        the deploy failed, every target is back            exit 1
        └── FleetInconsistent   targets ended on different releases               exit 4

Each error carries its exit code; the command line applies it in one place (``tasks._run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib import whereabouts
from deploylib.whereabouts import Doubt, Whereabouts

if TYPE_CHECKING:
    from deploylib.commands import Result

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_INCONSISTENT = 4


class DeployError(Exception):
    """Base class of every error deploylib raises on purpose."""

    exit_code = EXIT_FAILED
    #: set once the error was shown through a reporter, so the command line does not repeat it
    reported = False


class ConfigError(DeployError):
    """Bad configuration or usage, found before any target was touched."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class LockOwner:
    """Who holds a target's lock, as read from ``owner.json``."""

    host: str
    raw: Mapping[str, object]
    age: int | None = None
    stale: str | None = None  # why the lock looks abandoned

    def describe(self) -> str:
        user = self.raw.get("user", "?")
        controller = self.raw.get("host", "?")
        pid = self.raw.get("pid", "?")
        since = self.raw.get("started_at", "?")
        release = self.raw.get("release", "?")
        text = f"{user}@{controller} (pid {pid}, release {release}) since {since}"
        if self.age is not None:
            text += f", last heartbeat {self.age} s ago"
        if self.stale:
            text += f" - STALE: {self.stale}"
        return text


class LockHeld(DeployError):
    exit_code = EXIT_LOCKED

    def __init__(self, owners: list[LockOwner], env: str = "ENV") -> None:
        self.owners = owners
        lines = [f"{o.host}: locked by {o.describe()}" for o in owners]
        if all(o.stale for o in owners):
            hint = (
                f"the deploy that took it is gone; remove the lock with: "
                f"deploylib unlock --env {env}"
            )
        else:
            hint = (
                "wait for that deploy to finish; only if you know it is dead: "
                f"deploylib unlock --env {env} --force"
            )
        super().__init__("another deploy holds the lock:\n  " + "\n  ".join(lines) + f"\n({hint})")


class PlacedError(DeployError):
    """An error that ends a run that reached the targets: it says where each one is."""

    def __init__(self, message: str, placement: Whereabouts | Mapping[str, str | None]) -> None:
        self.whereabouts = whereabouts.of(placement)
        super().__init__(message + "\n" + whereabouts.describe(self.whereabouts))

    @property
    def placement(self) -> dict[str, str | None]:
        """The release of each target (see ``doubts`` for those not known for sure)."""
        return self.whereabouts.releases

    @property
    def doubts(self) -> dict[str, Doubt]:
        return self.whereabouts.doubts


class LockLost(PlacedError):
    """This deploy's lock was removed or taken over by another deploy while it ran: it stopped
    changing those targets."""

    exit_code = EXIT_LOCKED


class StepFailed(DeployError):
    """One operation failed on one target; carries the captured result."""

    def __init__(self, step: str, host: str, message: str, result: Result | None = None) -> None:
        self.step = step
        self.host = host
        self.result = result
        self.message = message
        super().__init__(f"{host}: step {step!r} failed: {message}")


class VerifyFailed(StepFailed):
    """A health check gave up after its attempts or deadline."""


class DeployFailed(PlacedError):
    """The deploy failed and every target is on the release it had before."""

    exit_code = EXIT_FAILED


class FleetInconsistent(PlacedError):
    """Putting targets back failed somewhere: they are on different releases."""

    exit_code = EXIT_INCONSISTENT
