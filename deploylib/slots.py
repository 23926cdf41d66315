"""Blue-green slots on one host: what each of the two slots runs and which one takes traffic.

A host of a ``blue_green`` environment has two slots, ``blue`` on the first of the strategy's
``ports`` and ``green`` on the second. deploylib keeps what it knows of them in
``.deploylib/slots.json`` on the host (``SlotState``): the live slot, and per slot the release it
was started with and since when it takes no traffic (``idle_since``, seconds since the epoch on
this machine's clock). This module is the pure part: the record, its JSON, and the choices made
from it — which slot a release goes live on, and whether it must be started there first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

SLOT_NAMES = ("blue", "green")


@dataclass(frozen=True)
class Slot:
    """One slot of a host: its name (``{slot}``) and port (``{port}``)."""

    name: str
    port: int

    @property
    def values(self) -> dict[str, str]:
        """Its placeholders."""
        return {"slot": self.name, "port": str(self.port)}


def slots_of(ports: Sequence[int]) -> tuple[Slot, Slot]:
    """The two slots of a strategy's ``ports``."""
    blue, green = ports
    return Slot("blue", blue), Slot("green", green)


@dataclass(frozen=True)
class SlotRecord:
    """What a slot was last given: the release started on it (None: stopped, or never used)
    and, when it takes no traffic, since when (None: it never took any)."""

    release: str | None = None
    idle_since: float | None = None


@dataclass(frozen=True)
class SlotState:
    """``.deploylib/slots.json``: the live slot and what each slot runs."""

    live: str | None = None
    slots: Mapping[str, SlotRecord] = field(default_factory=dict)

    def record(self, name: str) -> SlotRecord:
        return self.slots.get(name, SlotRecord())

    def running(self, release: str) -> str | None:
        """The slot started with ``release`` (the live one first), if any."""
        for name in sorted(self.slots, key=lambda n: n != self.live):
            if self.slots[name].release == release:
                return name
        return None

    def idle(self) -> str:
        """The slot that takes no traffic (blue when none does)."""
        if self.live == SLOT_NAMES[0]:
            return SLOT_NAMES[1]
        return SLOT_NAMES[0]

    def started(self, name: str, release: str) -> SlotState:
        """``release`` was started on ``name`` (which takes no traffic yet)."""
        slots = dict(self.slots)
        slots[name] = SlotRecord(release, self.record(name).idle_since)
        return replace(self, slots=slots)

    def stopped(self, name: str) -> SlotState:
        slots = dict(self.slots)
        slots[name] = SlotRecord(None, self.record(name).idle_since)
        return replace(self, slots=slots)

    def switched(self, name: str, now: float) -> SlotState:
        """``name`` takes all traffic from ``now`` on; the slot live before is idle since."""
        slots = dict(self.slots)
        slots[name] = SlotRecord(self.record(name).release, None)
        if self.live and self.live != name:
            slots[self.live] = SlotRecord(self.record(self.live).release, now)
        return SlotState(live=name, slots=slots)

    def unset(self, now: float) -> SlotState:
        """No slot takes traffic any more (a put-back to no release)."""
        slots = dict(self.slots)
        if self.live:
            slots[self.live] = SlotRecord(self.record(self.live).release, now)
        return SlotState(live=None, slots=slots)

    def drain_left(self, name: str, drain: float, now: float) -> float:
        """Seconds to wait before ``name`` may be stopped: ``drain`` after it stopped taking
        traffic (0 when it never took any, or long ago)."""
        if name == self.live:
            return drain
        since = self.record(name).idle_since
        if since is None:
            return 0.0
        return max(0.0, min(drain, since + drain - now))

    def as_json(self) -> str:
        return json.dumps(
            {
                "live": self.live,
                "slots": {
                    name: {"release": r.release, "idle_since": r.idle_since}
                    for name, r in sorted(self.slots.items())
                },
            },
            sort_keys=True,
        )

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.as_json())
        return data


def parse_slots(text: str) -> SlotState | None:
    """The slot state in ``text`` (``slots.json``); None when it holds none or is damaged."""
    try:
        value = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    live = value.get("live")
    slots: dict[str, SlotRecord] = {}
    raw = value.get("slots")
    for name, entry in (raw if isinstance(raw, dict) else {}).items():
        if name not in SLOT_NAMES or not isinstance(entry, dict):
            return None
        release, since = entry.get("release"), entry.get("idle_since")
        if not (release is None or isinstance(release, str)):
            return None
        if not (since is None or isinstance(since, int | float)):
            return None
        slots[name] = SlotRecord(release, None if since is None else float(since))
    if live is not None and live not in SLOT_NAMES:
        return None
    return SlotState(live, slots)
