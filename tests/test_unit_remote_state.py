"""Specifies deploylib.remote.state: parsing what a target holds, and the decisions made from it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from deploylib.remote.layout import Layout
from deploylib.remote.reading import STATE_MARK, parse_state, render_state
from deploylib.remote.state import TargetState
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
