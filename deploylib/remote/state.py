"""What a target holds (``TargetState``, read by ``remote.reading``) and the decisions made from
it: the layout problems, the release log's problems, the rollback target and what cleanup may
remove. Decisions come from the release log and ``readlink current``, never from directory order
or mtimes; when the log cannot be read whole or does not explain what is on disk, nothing is
removed or guessed."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from deploylib.remote.layout import Layout
from deploylib.slots import SlotState

#: the keys every release-log line has
LOG_KEYS = frozenset({"event", "outcome", "release"})


@dataclass(frozen=True)
class TargetState:
    """What a target holds, read in one round trip."""

    #: the release ``current`` points at, when it points into ``releases/``
    current: str | None = None
    releases: frozenset[str] = frozenset()
    log: tuple[Mapping[str, Any], ...] = ()
    lock_owner: Mapping[str, Any] | None = None
    locked: bool = False
    #: seconds since the lock's heartbeat (or since it was taken)
    lock_age: int | None = None
    #: ``absent``, ``release`` (a link into releases/), ``foreign`` (a link elsewhere),
    #: ``not_a_link`` (a directory or file), or ``unknown`` (the state was not read)
    current_kind: str = "absent"
    #: what ``readlink current`` printed
    current_link: str | None = None
    #: releases whose REVISION exists (unpacked completely)
    complete: frozenset[str] = frozenset()
    #: line numbers of release-log lines that could not be read
    damaged: tuple[int, ...] = ()
    #: the first line number of ``log`` in the file (the log is read from its tail)
    log_start: int = 1
    #: blue-green: what each slot runs and which one is live (None: no record, or damaged)
    slots: SlotState | None = None
    #: the live release's manifest, as kept there (read by a deploy whose push sends deltas)
    manifest: str = ""

    @property
    def read(self) -> bool:
        return self.current_kind != "unknown"

    def layout_problem(self, layout: Layout) -> str | None:
        """Why this target's layout is not one deploylib made (then nothing may change)."""
        if self.current_kind == "not_a_link":
            return (
                f"{layout.current} is not a symlink (a directory or file that deploylib did not "
                "make); move it away and deploy again"
            )
        if self.current_kind == "foreign":
            return (
                f"{layout.current} points at {self.current_link!r}, not at a release in "
                f"{layout.releases}; move it away and deploy again"
            )
        return None

    def entries(self) -> list[Mapping[str, Any]]:
        return list(self.log)

    def deployed(self) -> list[str]:
        """Releases that a deploy made current, oldest first, each once (at its last time)."""
        # a dict keeps the order and moves a release to its last time in constant time (a
        # list's remove made this quadratic: seconds for a fleet with years of history)
        order: dict[str, None] = {}
        for entry in self.log:
            if entry.get("event") == "deploy" and entry.get("outcome") == "success":
                release = str(entry.get("release"))
                order.pop(release, None)
                order[release] = None
        return list(order)

    def was_live(self, release: str) -> bool:
        """Whether a deploy or rollback ever made ``release`` current, by the log."""
        return any(
            entry.get("release") == release
            and entry.get("outcome") == "success"
            and entry.get("event") in ("deploy", "rollback")
            for entry in self.log
        )

    def mentioned(self) -> set[str]:
        """Every release the log speaks of, whatever the outcome."""
        return {str(entry.get("release")) for entry in self.log}

    def history(self) -> list[str]:
        """What was live, as a stack: a deploy pushes its release, a rollback pops back to its
        target (or pushes it, when rolling forward to a release no longer on the stack).

        Each line records what was live before it (``previous``) and after it (``current``).
        Where a line's ``previous`` is not what the line before left live, a line is missing
        (a deploy killed after its switch, a write that failed): the host went from there to
        ``previous`` unrecorded. A release already on the stack was gone back to (a rollback's
        lost line): the stack pops back to it. Any other was pushed (a deploy's lost line: one
        verified whose line a full disk refused, or one cut off after its switch)."""
        return self._walk()[0]

    def _walk(self) -> tuple[list[str], set[str]]:
        """``history``'s stack, and the releases pushed on it because a line was missing: walked
        once per state (a cleanup's decision asks for it three times), copies handed out."""
        stack, unrecorded = self._walked
        return list(stack), set(unrecorded)

    @cached_property
    def _walked(self) -> tuple[tuple[str, ...], frozenset[str]]:
        stack, unrecorded = self._walk_log()
        return tuple(stack), frozenset(unrecorded)

    def _walk_log(self) -> tuple[list[str], set[str]]:
        stack: list[str] = []
        unrecorded: set[str] = set()
        live: object = _UNREAD
        for entry in self.log:
            if "previous" in entry and entry.get("previous") != live:
                previous = str(entry.get("previous") or "")
                if live is _UNREAD or not previous:
                    # the first line read (the log may be read from its tail), or a host that
                    # had nothing live: the history starts here (a rollback's previous is the
                    # release it undid: never one to go back to)
                    undone = entry.get("event") == "rollback"
                    stack = [previous] if previous and not undone else []
                elif previous in stack:
                    del stack[stack.index(previous) + 1 :]
                else:
                    stack.append(previous)
                    unrecorded.add(previous)
            if "current" in entry:
                live = entry.get("current") or None
            if entry.get("outcome") != "success":
                continue
            release = str(entry.get("release"))
            if entry.get("event") == "rollback" and release in stack:
                del stack[stack.index(release) + 1 :]
            elif entry.get("event") in ("deploy", "rollback"):
                undone = entry.get("previous")
                fled = entry.get("event") == "rollback" and stack and stack[-1] == undone
                if fled and undone in unrecorded:
                    stack.pop()  # left with --to: it went live without its line
                stack.append(release)
        return stack, unrecorded

    def log_problem(self) -> str | None:
        """Why the release log cannot be trusted to say what to roll back to, or None."""
        if self.damaged:
            lines = ", ".join(str(n) for n in self.damaged[:5])
            more = f" and {len(self.damaged) - 5} more" if len(self.damaged) > 5 else ""
            return (
                f"the release log has line(s) that cannot be read ({lines}{more} of "
                ".deploylib/releases.jsonl)"
            )
        if self.log:
            recorded = self.log[-1].get("current") or None
            if "current" in self.log[-1] and recorded != self.current:
                return (
                    f"current is {self.current or '(none)'} but the release log's last line "
                    f"says {recorded or '(none)'}: the log does not explain how it got there"
                )
        return None

    def rollback_target(self, failed: Collection[str] = ()) -> str | None:
        """The release a rollback goes to: the one live before current, still complete on disk;
        None when there is none or when the log cannot be trusted to say (``log_problem``).
        ``failed``: releases whose deploy a release log (this target's or another's) records as
        failed; one of them that went live here without its line (the deploy was cut off here
        after its switch, then put back everywhere else) is passed over."""
        if self.log_problem():
            return None
        stack, unrecorded = self._walk()
        below = stack[:-1] if stack and stack[-1] == self.current else stack
        for release in reversed(below):
            if release == self.current or release not in self.complete:
                continue
            if release in unrecorded and release in failed and not self.was_live(release):
                continue
            return release
        return None

    def failed_deploys(self) -> set[str]:
        """Releases whose deploy this log records as failed (put back, or failed outright)."""
        return {
            str(entry.get("release"))
            for entry in self.log
            if entry.get("event") == "deploy" and entry.get("outcome") != "success"
        }

    def unexplained(self) -> list[str]:
        """Release dirs the log does not mention (kept by cleanup, reported)."""
        known = self.mentioned() | {self.current or ""}
        return sorted(r for r in self.releases if r not in known)

    def removable(self, keep: int) -> list[str]:
        """Release dirs that cleanup may delete: only those the log explains (live once and
        older than the newest ``keep``, or left by a failed deploy), never current, the
        rollback target or a release a blue-green slot runs, and none at all while the log is
        damaged."""
        if self.damaged:
            return []
        deployed = [r for r in self.deployed() if r in self.releases]
        protected = set(deployed[-keep:]) if keep > 0 else set()
        protected.add(self.current or "")
        protected.add(self.rollback_target() or "")
        # and the one a fleet's rollback takes when it passes over a release live here without
        # its line (the others' logs may say it was put back: this target cannot know)
        protected.add(self.rollback_target(self._walk()[1]) or "")
        if self.slots is not None:
            # an idle slot's release is an instant rollback: its directory stays
            protected.update(r.release or "" for r in self.slots.slots.values())
        if self.log_problem():
            # current disagrees with the log: whatever was live just before is unknown, so
            # keep the newest release that is not current as well
            others = [r for r in sorted(self.releases) if r != self.current]
            protected.update(others[-1:])
        known = self.mentioned()
        return sorted(r for r in self.releases if r in known and r not in protected)


_UNREAD = object()
