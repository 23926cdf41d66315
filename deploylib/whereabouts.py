"""Where each target of a run is, as data: the release it is on (as far as the run knows) and,
for a target the run cannot be sure of, why not. Reporters and errors render it in words
(``describe``); events and the Python API carry it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DoubtKind = Literal["switching", "unread", "unreachable", "untouched"]


@dataclass(frozen=True)
class Doubt:
    """Why a target's release is not known for sure.

    - ``switching``: cut off while its ``current`` moved: on its release or on ``other``
    - ``unread``: its state could not be read, and the run did not change it
    - ``unreachable``: lost after the run changed it; its release is the last one known
    - ``untouched``: unreachable from the start: the run never changed it
    """

    kind: DoubtKind
    other: str | None = None

    def as_data(self) -> dict[str, str]:
        return {"kind": self.kind, **({"other": self.other} if self.other else {})}


@dataclass(frozen=True)
class Whereabouts:
    """The release of each target (``None``: no release), and the doubts about some."""

    releases: dict[str, str | None] = field(default_factory=dict)
    doubts: dict[str, Doubt] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """For events: ``placement`` (release by target) and, if any, ``doubts``."""
        data: dict[str, Any] = {"placement": dict(self.releases)}
        if self.doubts:
            data["doubts"] = {name: d.as_data() for name, d in self.doubts.items()}
        return data


def of(placement: Whereabouts | Mapping[str, str | None]) -> Whereabouts:
    """A plain mapping of releases is whereabouts without doubts."""
    if isinstance(placement, Whereabouts):
        return placement
    return Whereabouts(dict(placement))


def describe(where: Whereabouts) -> str:
    """One line per target, for people."""
    return "\n".join(f"  {name}: {_words(where, name)}" for name in where.releases)


def _words(where: Whereabouts, name: str) -> str:
    release = where.releases[name]
    doubt = where.doubts.get(name)
    if doubt is None:
        return release or "(no release)"
    if doubt.kind == "switching":
        return f"{release or '(no release)'} or {doubt.other} (unreachable while switching)"
    if doubt.kind == "unread":
        return "unknown (its state could not be read)"
    if doubt.kind == "unreachable":
        return f"{release or '(no release)'} (unreachable; last known)"
    return f"{release or 'unknown'} (unreachable; not changed)"
