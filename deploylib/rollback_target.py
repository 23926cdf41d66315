"""Where a rollback takes each target, chosen from the targets' states alone (pure functions;
the runner reads the states and switches).

With ``--to RELEASE`` every target goes to that one release. Without, a rollback undoes the last
deploy: the targets on the newest release go back, each to what it ran before, by its own release
log; the others were not part of that deploy and stay. The newest release is the one the release
logs show deployed after the others (on some target one was live before the other), not a
clock's say: controllers' clocks may differ. Only releases no log relates are told apart by the
time their ids begin with. So a fleet deployed in parts goes back in the same parts, and undoing
again goes one step further back each time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from deploylib.remote.state import TargetState


@dataclass(frozen=True)
class RollbackPlan:
    """The release each moving target goes to; the targets that stay, on what; or why not."""

    moves: dict[str, str] = field(default_factory=dict)
    stays: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def split(self) -> bool:
        """The fleet ends on more than one release."""
        return len({*self.moves.values(), *self.stays.values()}) > 1

    @property
    def release(self) -> str:
        """The one release every moving target goes to, or '' when they go to several."""
        targets = set(self.moves.values())
        return targets.pop() if len(targets) == 1 else ""


def rollback_plan(states: Mapping[str, TargetState], to: str | None) -> RollbackPlan:
    """Where each target goes: every one to ``to``, or the last deploy undone (see above)."""
    if to is not None:
        return _everyone_to(states, to)
    live = {name: state.current for name, state in states.items() if state.current}
    if not live:
        return RollbackPlan(problems=[f"{n}: there is no release to go back from" for n in states])
    newest = _newest(states, set(live.values()))
    # put back somewhere and verified live nowhere
    failed = {release for state in states.values() for release in state.failed_deploys()}
    failed -= {release for state in states.values() for release in state.deployed()}
    moves: dict[str, str] = {}
    stays: dict[str, str | None] = {}
    problems: list[str] = []
    for name, state in states.items():
        if state.current != newest:
            stays[name] = state.current
            continue
        target = state.rollback_target(failed)
        if target is not None:
            moves[name] = target
            continue
        problem = state.log_problem()
        on_disk = ", ".join(sorted(state.complete - {state.current or ""})) or "none"
        problems.append(
            f"{name}: {problem}; name the release with --to (releases there: {on_disk})"
            if problem
            else f"{name}: there is no earlier release"
        )
    return RollbackPlan(moves, stays, problems)


def _everyone_to(states: Mapping[str, TargetState], to: str) -> RollbackPlan:
    moves: dict[str, str] = {}
    problems: list[str] = []
    for name, state in states.items():
        if to not in state.complete:
            problems.append(f"{name}: release {to} is not there (or not complete)")
        elif not state.log_problem() and not state.was_live(to):
            problems.append(f"{name}: release {to} was never live there")
        else:
            moves[name] = to
    return RollbackPlan(moves, {}, problems)


def _newest(states: Mapping[str, TargetState], currents: set[str]) -> str:
    """Of the releases targets run, the one no other was deployed after, by the logs."""
    followed: dict[str, set[str]] = {release: set() for release in currents}
    for state in states.values():
        order = {release: i for i, release in enumerate(state.deployed())}
        for earlier in currents & order.keys():
            followed[earlier] |= {r for r in currents & order.keys() if order[r] > order[earlier]}
    last = [release for release in currents if not followed[release]]
    return max(last or currents, key=_deployed_at)


def _deployed_at(release: str) -> str:
    """The time a release id starts with (``YYYYmmddTHHMMSSZ``): later deploys sort after."""
    return release.split("-", 1)[0]


def revision_of(state: TargetState, release: str) -> str:
    for entry in reversed(state.log):
        if entry.get("release") == release and entry.get("revision"):
            return str(entry["revision"])
    return "unknown"
