"""Where targets are, as data and in words: releases by target, the doubts about some, what
events carry and what people read."""

from __future__ import annotations

from deploylib.errors import DeployFailed
from deploylib.whereabouts import Doubt, Whereabouts, describe, of

WHERE = Whereabouts(
    {"a": "R2", "b": "R1", "c": None, "d": "R1", "e": None, "f": None},
    {
        "b": Doubt("switching", "R2"),
        "c": Doubt("unread"),
        "d": Doubt("unreachable"),
        "e": Doubt("untouched"),
    },
)


def test_every_doubt_is_said_in_words_and_a_sure_target_by_its_release() -> None:
    assert describe(WHERE).splitlines() == [
        "  a: R2",
        "  b: R1 or R2 (unreachable while switching)",
        "  c: unknown (its state could not be read)",
        "  d: R1 (unreachable; last known)",
        "  e: unknown (unreachable; not changed)",
        "  f: (no release)",
    ]


def test_events_carry_releases_and_doubts_as_data_without_words() -> None:
    data = WHERE.as_data()
    assert data["placement"] == WHERE.releases
    assert data["doubts"] == {
        "b": {"kind": "switching", "other": "R2"},
        "c": {"kind": "unread"},
        "d": {"kind": "unreachable"},
        "e": {"kind": "untouched"},
    }
    assert "doubts" not in Whereabouts({"a": "R1"}).as_data()


def test_an_error_keeps_the_data_and_says_it_in_its_message() -> None:
    error = DeployFailed("deploy failed: x; nothing was changed", WHERE)
    assert error.placement == WHERE.releases and error.doubts == WHERE.doubts
    assert str(error).endswith(describe(WHERE))
    plain = DeployFailed("deploy failed", {"a": "R1"})
    assert plain.whereabouts == of({"a": "R1"}) and plain.doubts == {}
