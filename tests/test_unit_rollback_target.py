"""Specifies rollback_target.rollback_plan: --to puts every target on one release; without it the
last deploy is undone, each target back to what it ran before, the others left alone."""

from __future__ import annotations

from deploylib.remote.state import TargetState
from deploylib.rollback_target import rollback_plan
from tests.builders import log_entry, target_state

# release ids begin with the time of their deploy
ONE, TWO, THREE, FOUR = (f"2026010{n}T000000Z-r{n}" for n in range(1, 5))


def state(current: str, *live: str) -> TargetState:
    """A target whose deploys made ``live`` current in turn; it runs ``current``."""
    return target_state(current, on_disk=live, log=[log_entry("deploy", r) for r in live])


def test_a_whole_fleet_deploy_is_undone_on_every_target() -> None:
    plan = rollback_plan({"a": state(TWO, ONE, TWO), "b": state(TWO, ONE, TWO)}, None)
    assert plan.moves == {"a": ONE, "b": ONE} and plan.stays == {} and plan.problems == []
    assert plan.release == ONE and not plan.split


def test_a_fleet_deployed_in_parts_goes_back_in_the_same_parts() -> None:
    """three to h1, then four to all: undoing four puts h1 on three and the others on two, and
    says the fleet is split; undoing again takes h1 (on the newest release) one step further."""
    h1 = state(FOUR, ONE, TWO, THREE, FOUR)
    others = state(FOUR, ONE, TWO, FOUR)
    plan = rollback_plan({"h1": h1, "h2": others, "h3": others}, None)
    assert plan.moves == {"h1": THREE, "h2": TWO, "h3": TWO} and plan.split
    assert plan.release == ""

    after = {
        "h1": target_state(THREE, [ONE, TWO, THREE, FOUR], [*h1.log, log_entry("rollback", THREE)]),
        "h2": target_state(TWO, [ONE, TWO, FOUR], [*others.log, log_entry("rollback", TWO)]),
    }
    again = rollback_plan(after, None)
    assert again.moves == {"h1": TWO} and again.stays == {"h2": TWO} and not again.split


def test_targets_not_in_the_last_deploy_stay_where_they_are() -> None:
    plan = rollback_plan({"a": state(THREE, ONE, THREE), "b": state(TWO, ONE, TWO)}, None)
    assert plan.moves == {"a": ONE} and plan.stays == {"b": TWO} and plan.split


def test_what_cannot_be_undone_is_said_per_target() -> None:
    plan = rollback_plan({"a": state(ONE, ONE)}, None)
    assert plan.moves == {} and plan.problems == ["a: there is no earlier release"]


def test_to_puts_every_target_on_one_release_or_says_why_not() -> None:
    plan = rollback_plan({"a": state(TWO, ONE, TWO), "b": state(THREE, ONE, THREE)}, ONE)
    assert plan.moves == {"a": ONE, "b": ONE} and plan.release == ONE and not plan.split
    missing = rollback_plan({"a": state(TWO, ONE, TWO)}, "20260109T000000Z-zz")
    assert missing.moves == {} and "not there" in missing.problems[0]


def test_the_last_deploy_is_told_by_the_logs_not_by_a_clock() -> None:
    """three was deployed to h1 after two (h1's log says so), from a controller whose clock
    was an hour behind: its id sorts before two's. Undoing the last deploy moves h1 only."""
    behind = "20260101T230000Z-r3"  # deployed last, with an earlier time in its id
    two = "20260102T000000Z-r2"
    h1 = state(behind, ONE, two, behind)
    others = state(two, ONE, two)
    plan = rollback_plan({"h1": h1, "h2": others, "h3": others}, None)
    assert plan.moves == {"h1": two} and plan.stays == {"h2": two, "h3": two}
    assert not plan.split
