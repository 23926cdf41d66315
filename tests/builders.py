"""Builders for target states in unit tests: release-log lines and what a target holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from deploylib.remote.state import TargetState


def log_entry(event: str, release: str, outcome: str = "success") -> dict[str, str]:
    """A release-log line: ``event`` (deploy, rollback) of ``release``, ending in ``outcome``."""
    return {"event": event, "release": release, "outcome": outcome}


def target_state(
    current: str, on_disk: Iterable[str], log: Iterable[Mapping[str, str]]
) -> TargetState:
    """A target running ``current``, with the releases ``on_disk`` (all complete) and ``log``."""
    releases = frozenset(on_disk)
    return TargetState(current=current, releases=releases, complete=releases, log=tuple(log))
