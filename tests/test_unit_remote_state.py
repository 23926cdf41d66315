"""Specifies deploylib.remote.state: parsing what a target holds, and the decisions made from it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from deploylib.remote.layout import Layout
from deploylib.remote.reading import STATE_MARK, parse_state, render_state
from deploylib.remote.state import TargetState
from deploylib.rollback_target import rollback_plan
from deploylib.slots import SlotState
from tests.builders import log_entry, target_state


def test_parse_state_sections() -> None:
    good = "20260101T000000Z-a"
    output = (
        f"{STATE_MARK}current\nlink\n|releases/{good}\n{STATE_MARK}releases\n|B\n|{good} complete\n"
        f'|not-a-release\n{STATE_MARK}lock\nlocked\n|{{"user": "u"}}\n\n{STATE_MARK}log\nlines=3\n'
        f"|{json.dumps(log_entry('deploy', good))}\n|not json\n|{{}}\n\n{STATE_MARK}end\n"
    )
    state = parse_state(output, Layout("/srv/a"))
    assert state.current == good and state.current_kind == "release"
    assert state.releases == state.complete == frozenset({good})
    assert state.locked and state.lock_owner == {"user": "u"}
    assert [e["release"] for e in state.log] == [good]
    assert state.damaged == (2, 3)  # not JSON, and JSON without the keys of a log line
    assert not parse_state("").read
    assert parse_state(render_state()) == TargetState(log_start=1)


@pytest.mark.parametrize(
    ("link", "kind"),
    [
        ("releases/20260101T000000Z-a", "release"),
        ("/srv/a/releases/20260101T000000Z-a", "release"),
        ("./releases/20260101T000000Z-a/", "release"),
        ("/srv/other/releases/20260101T000000Z-a", "foreign"),
        ("/opt/app", "foreign"),
        ("releases/20240101120000", "foreign"),  # not a release id deploylib makes
        ("../../etc", "foreign"),
    ],
)
def test_current_pointing_elsewhere_is_foreign(link: str, kind: str) -> None:
    output = f"{STATE_MARK}current\nlink\n|{link}\n{STATE_MARK}end\n"
    state = parse_state(output, Layout("/srv/a"))
    assert state.current_kind == kind
    assert (state.current is not None) == (kind == "release")
    assert (state.layout_problem(Layout("/srv/a")) is None) == (kind == "release")


@pytest.mark.parametrize(
    ("log", "current", "on_disk", "target"),
    [
        (
            [log_entry("deploy", "A"), log_entry("deploy", "B"), log_entry("deploy", "C")],
            "C",
            "ABC",
            "B",
        ),
        (
            [
                log_entry("deploy", "A"),
                log_entry("deploy", "B"),
                log_entry("deploy", "C"),
                log_entry("rollback", "B"),
            ],
            "B",
            "ABC",
            "A",
        ),
        # deploy after a rollback: back goes to what was live before, not to the newer dir
        (
            [
                log_entry("deploy", "A"),
                log_entry("deploy", "B"),
                log_entry("rollback", "A"),
                log_entry("deploy", "D"),
            ],
            "D",
            "ABD",
            "A",
        ),
        # failed deploys are never targets
        (
            [
                log_entry("deploy", "A"),
                log_entry("deploy", "F", "failed"),
                log_entry("deploy", "B"),
            ],
            "B",
            "ABF",
            "A",
        ),
        # a target no longer on disk is skipped
        (
            [log_entry("deploy", "A"), log_entry("deploy", "B"), log_entry("deploy", "C")],
            "C",
            "AC",
            "A",
        ),
        ([log_entry("deploy", "A")], "A", "A", None),
    ],
)
def test_rollback_target_from_the_log(
    log: list[dict[str, str]], current: str, on_disk: str, target: str | None
) -> None:
    assert target_state(current, on_disk, log).rollback_target() == target


def test_removable_protects_current_and_rollback_target() -> None:
    log = [log_entry("deploy", r) for r in "ABCDE"] + [log_entry("rollback", "B")]
    state = target_state("B", on_disk="ABCDEX", log=log)
    # keep 2 newest deployed (D, E), current B and its rollback target A; X is not in the log:
    # kept (and reported) rather than guessed about
    assert state.removable(2) == ["C"]
    assert state.unexplained() == ["X"]


def test_removable_keeps_what_a_blue_green_slot_runs() -> None:
    log = [log_entry("deploy", r) for r in "ABCDE"]
    slots = SlotState().started("blue", "B").started("green", "E").switched("green", 0)
    state = replace(target_state("E", on_disk="ABCDE", log=log), slots=slots)
    # keep 1: E (current), D (rollback target); B runs on the idle slot: kept too
    assert state.removable(1) == ["A", "C"]


def test_a_log_line_whose_fields_are_not_text_is_damaged_not_a_crash() -> None:
    odd = json.dumps({"event": "deploy", "outcome": "success", "release": ["x"]})
    good = json.dumps(log_entry("deploy", "20260101T000000Z-a"))
    output = (
        f"{STATE_MARK}current\nabsent\n{STATE_MARK}releases\n{STATE_MARK}log\nlines=2\n"
        f"|{good}\n|{odd}\n\n{STATE_MARK}end\n"
    )
    state = parse_state(output)
    assert [e["release"] for e in state.log] == ["20260101T000000Z-a"] and state.damaged == (2,)


def _line(
    event: str, release: str, previous: str | None, current: str | None, outcome: str = "success"
) -> dict[str, object]:
    return {
        "event": event,
        "release": release,
        "outcome": outcome,
        "previous": previous,
        "current": current,
    }


R1, R2, R3, R6, R7 = (f"2026010{n}T000000Z-r{n}" for n in (1, 2, 3, 6, 7))


def test_a_deploy_cut_off_after_its_switch_is_popped_by_the_rollback_that_undid_it() -> None:
    """r3's deploy was killed after its switch (no line); `rollback --to r2` put the host back:
    the next rollback goes one further back, to r1, as it would with r3's line in the log."""
    log = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("rollback", R2, R3, R2),  # the host was on r3: its deploy left no line
    ]
    state = TargetState(
        current=R2,
        releases=frozenset({R1, R2, R3}),
        complete=frozenset({R1, R2, R3}),
        log=tuple(log),
    )
    assert state.history() == [R1, R2]
    assert state.rollback_target() == R1


def test_a_verified_deploy_whose_line_was_lost_is_still_the_one_to_go_back_to() -> None:
    """r3 went live and was verified, but a full disk refused its line: the next deploy's line
    says it replaced r3, and a rollback from r7 goes back to r3."""
    log = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("deploy", R7, R3, R7),
    ]
    on_disk = frozenset({R1, R2, R3, R7})
    state = TargetState(current=R7, releases=on_disk, complete=on_disk, log=tuple(log))
    assert state.history() == [R1, R2, R3, R7]
    assert state.rollback_target() == R3
    assert rollback_plan({"h1": state}, None).moves == {"h1": R3}


def test_a_release_the_fleet_put_back_is_never_a_rollback_target_where_it_left_no_line() -> None:
    """h2 was cut off after switching to r6 (no line there); h1 and h3 were put back and their
    logs say so. After r7 went out everywhere, a rollback takes every host to r2."""
    put_back = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("deploy", R6, R2, R2, outcome="rolled_back"),
        _line("deploy", R7, R2, R7),
    ]
    cut_off = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("deploy", R7, R6, R7),  # h2 was still on r6
    ]
    on_disk = frozenset({R1, R2, R6, R7})
    states = {
        name: TargetState(current=R7, releases=on_disk, complete=on_disk, log=tuple(log))
        for name, log in (("h1", put_back), ("h2", cut_off), ("h3", put_back))
    }
    plan = rollback_plan(states, None)
    assert plan.moves == {"h1": R2, "h2": R2, "h3": R2} and not plan.problems
    # h2 alone, without the fleet's word on r6, goes back to what was live before r7
    assert states["h2"].rollback_target() == R6


R4 = "20260104T000000Z-r4"


def test_a_release_left_with_rollback_to_after_lost_lines_is_not_gone_back_to() -> None:
    """r3 and r4 went live without their lines (a full disk); the operator left r4 with
    `rollback --to r3`: a plain rollback then goes to r2, never forward to r4."""
    log = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("rollback", R3, R4, R3),
    ]
    on_disk = frozenset({R1, R2, R3, R4})
    state = TargetState(current=R3, releases=on_disk, complete=on_disk, log=tuple(log))
    assert state.rollback_target() == R2


def test_a_log_read_from_a_rollback_line_never_goes_back_to_what_it_undid() -> None:
    on_disk = frozenset({R2, R3})
    log = [_line("rollback", R2, R3, R2)]
    state = TargetState(current=R2, releases=on_disk, complete=on_disk, log=tuple(log))
    assert state.rollback_target() is None


def test_a_release_verified_on_one_host_is_gone_back_to_where_its_line_was_lost() -> None:
    """r3 passed on h1 and h2 and was put back on h3 (a failure budget); h2's r3 line was lost.
    After r4 everywhere, h1 and h2 both go back to r3; h3, which never ran it, to r2."""
    verified = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("deploy", R3, R2, R3),
        _line("deploy", R4, R3, R4),
    ]
    lost = [*verified[:2], _line("deploy", R4, R3, R4)]
    put_back = [
        *verified[:2],
        _line("deploy", R3, R2, R2, outcome="rolled_back"),
        _line("deploy", R4, R2, R4),
    ]
    on_disk = frozenset({R1, R2, R3, R4})
    states = {
        name: TargetState(current=R4, releases=on_disk, complete=on_disk, log=tuple(log))
        for name, log in (("h1", verified), ("h2", lost), ("h3", put_back))
    }
    assert rollback_plan(states, None).moves == {"h1": R3, "h2": R3, "h3": R2}


def test_cleanup_keeps_what_a_fleet_rollback_may_need_where_a_line_was_lost() -> None:
    """h2 was cut off after switching to r6 (no line): alone it would go back to r6, the
    fleet's rollback takes it to r2. Cleanup keeps both."""
    log = [
        _line("deploy", R1, None, R1),
        _line("deploy", R2, R1, R2),
        _line("deploy", R7, R6, R7),
    ]
    on_disk = frozenset({R1, R2, R6, R7})
    state = TargetState(current=R7, releases=on_disk, complete=on_disk, log=tuple(log))
    removable = state.removable(keep=1)
    assert R2 not in removable and R6 not in removable and R7 not in removable


def test_deployed_orders_releases_by_their_last_deploy() -> None:
    log = [log_entry("deploy", r) for r in "ABCAB"] + [log_entry("deploy", "D", "failed")]
    assert target_state("B", "ABCD", log).deployed() == ["C", "A", "B"]


def test_the_walked_history_is_read_once_and_handed_out_as_copies() -> None:
    log = [log_entry("deploy", r) for r in "ABC"]
    state = target_state("C", "ABC", log)
    history = state.history()
    history.clear()  # what a caller does with its copy never reaches the state
    assert state.history() == ["A", "B", "C"]
    assert state.rollback_target() == "B"
    # a state made from it anew walks its own log
    assert replace(state, log=tuple(log[:2]), current="B").history() == ["A", "B"]
