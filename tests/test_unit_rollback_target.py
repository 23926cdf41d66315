"""Specifies rollback_target.rollback_release: one release for every target, or why not."""

from __future__ import annotations

from deploylib.remote.state import TargetState
from deploylib.rollback_target import rollback_release
from tests.builders import log_entry, target_state


def test_the_rollback_release_is_one_for_every_target_or_says_why_not() -> None:
    def state(current: str, *live: str) -> TargetState:
        return target_state(current, on_disk=live, log=[log_entry("deploy", r) for r in live])

    assert rollback_release({"a": state("B", "A", "B"), "b": state("B", "A", "B")}, None) == (
        "A",
        [],
    )
    release, why = rollback_release({"a": state("B", "A", "B"), "b": state("C", "X", "C")}, None)
    assert release is None and "disagree" in why[0] and "--to" in why[0]
    release, why = rollback_release({"a": state("A", "A")}, None)
    assert release is None and why == ["a: there is no earlier release"]
    assert rollback_release({"a": state("B", "A", "B")}, "A") == ("A", [])
    release, why = rollback_release({"a": state("B", "A", "B")}, "Z")
    assert release is None and "not there" in why[0]
