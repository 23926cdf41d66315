"""Specifies inspection's reading of a split fleet: who differs from most hosts, and the line
that says so (or lists every host when no release runs on most)."""

from __future__ import annotations

from typing import Any

from deploylib.inspection import _marked_split, split_line


def rows(*currents: str | None) -> list[dict[str, Any]]:
    return _marked_split(
        [{"host": f"h{i}", "current": c, "error": None} for i, c in enumerate(currents, 1)]
    )


def test_one_release_everywhere_is_not_split() -> None:
    fleet = rows("A", "A", "A")
    assert all(r["consistent"] and not r["differs"] for r in fleet) and split_line(fleet) is None


def test_the_hosts_off_the_majority_are_marked_and_named() -> None:
    fleet = rows("A", "B", "A")
    assert [r["differs"] for r in fleet] == [False, True, False]
    assert split_line(fleet) == "the fleet is split: most hosts run A; h2 (B) differ"


def test_without_a_majority_every_host_is_listed() -> None:
    fleet = rows("A", "B", "C")
    assert split_line(fleet) == "the fleet is split: h1 (A), h2 (B), h3 (C)"
    unread = _marked_split(
        [
            {"host": "h1", "current": "A", "error": None},
            {"host": "h2", "current": None, "error": "could not connect"},
        ]
    )
    assert all(r["consistent"] for r in unread) and split_line(unread) is None
