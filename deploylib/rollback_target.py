"""Which release a rollback goes to: one for every target, chosen from their states alone (pure
functions; the runner reads the states and switches)."""

from __future__ import annotations

from collections.abc import Mapping

from deploylib.remote.state import TargetState


def rollback_release(
    states: Mapping[str, TargetState], to: str | None
) -> tuple[str | None, list[str]]:
    """The one release every target goes back to — ``to``, or each one's rollback target from
    its release log — or None and why not, a line per problem."""
    wanted: dict[str, str | None] = {}
    why: list[str] = []
    for name, state in states.items():
        if to is not None:
            if to not in state.complete:
                why.append(f"{name}: release {to} is not there (or not complete)")
            elif not state.log_problem() and not state.was_live(to):
                why.append(f"{name}: release {to} was never live there")
            else:
                wanted[name] = to
            continue
        wanted[name] = state.rollback_target()
        if wanted[name] is not None:
            continue
        problem = state.log_problem()
        on_disk = ", ".join(sorted(state.complete - {state.current or ""})) or "none"
        why.append(
            f"{name}: {problem}; name the release with --to (releases there: {on_disk})"
            if problem
            else f"{name}: there is no earlier release"
        )
    if why:
        return None, why
    distinct = set(wanted.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{name} → {release}" for name, release in wanted.items())
        return None, [f"targets disagree on the previous release ({listed}): use --to RELEASE"]
    return distinct.pop(), []


def revision_of(state: TargetState, release: str) -> str:
    for entry in reversed(state.log):
        if entry.get("release") == release and entry.get("revision"):
            return str(entry["revision"])
    return "unknown"
