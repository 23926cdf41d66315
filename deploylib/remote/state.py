"""What a target holds, read in one round trip: the command that prints it, its parser (and the
parser's inverse, for fake targets), and the decisions made from it — the layout problems, the
release log's problems, the rollback target and what cleanup may remove. Decisions come from
the release log and ``readlink current``, never from directory order or mtimes; when the log
cannot be read whole or does not explain what is on disk, nothing is removed or guessed."""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from deploylib.commands import Command
from deploylib.remote import gnu
from deploylib.remote.layout import Layout, is_release_id

STATE_MARK = "@@deploylib:"
LOG_TAIL = 5000
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
        order: list[str] = []
        for entry in self.log:
            if entry.get("event") == "deploy" and entry.get("outcome") == "success":
                release = str(entry.get("release"))
                if release in order:
                    order.remove(release)
                order.append(release)
        return order

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
        Where a line's ``previous`` is not what the line before left live, lines are missing
        (a write that failed): the stack before that point no longer describes this host, and
        it starts again from that line's ``previous``."""
        stack: list[str] = []
        live: object = _UNREAD
        for entry in self.log:
            if "previous" in entry and entry.get("previous") != live:
                # the first line read (the log may be read from its tail), or lines missing
                stack = [str(entry["previous"])] if entry.get("previous") else []
            if "current" in entry:
                live = entry.get("current") or None
            if entry.get("outcome") != "success":
                continue
            release = str(entry.get("release"))
            if entry.get("event") == "rollback" and release in stack:
                del stack[stack.index(release) + 1 :]
            elif entry.get("event") in ("deploy", "rollback"):
                stack.append(release)
        return stack

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

    def rollback_target(self) -> str | None:
        """The release a rollback goes to: the one live before current, still complete on disk;
        None when there is none or when the log cannot be trusted to say (``log_problem``)."""
        if self.log_problem():
            return None
        stack = self.history()
        below = stack[:-1] if stack and stack[-1] == self.current else stack
        for release in reversed(below):
            if release != self.current and release in self.complete:
                return release
        return None

    def unexplained(self) -> list[str]:
        """Release dirs the log does not mention (kept by cleanup, reported)."""
        known = self.mentioned() | {self.current or ""}
        return sorted(r for r in self.releases if r not in known)

    def removable(self, keep: int) -> list[str]:
        """Release dirs that cleanup may delete: only those the log explains (live once and
        older than the newest ``keep``, or left by a failed deploy), never current or the
        rollback target, and none at all while the log is damaged."""
        if self.damaged:
            return []
        deployed = [r for r in self.deployed() if r in self.releases]
        protected = set(deployed[-keep:]) if keep > 0 else set()
        protected.add(self.current or "")
        protected.add(self.rollback_target() or "")
        if self.log_problem():
            # current disagrees with the log: whatever was live just before is unknown, so
            # keep the newest release that is not current as well
            others = [r for r in sorted(self.releases) if r != self.current]
            protected.update(others[-1:])
        known = self.mentioned()
        return sorted(r for r in self.releases if r in known and r not in protected)


_UNREAD = object()


def state_script(layout: Layout) -> str:
    """Shell that prints current, the release dirs, the lock owner and the log tail, in marked
    sections. It changes nothing and always ends with exit status 0."""
    q = shlex.quote
    mark = STATE_MARK
    return "; ".join(
        [
            f"echo {mark}current",
            f"if [ -L {q(layout.current)} ]; then echo link; readlink {q(layout.current)}; "
            f"elif [ -e {q(layout.current)} ]; then echo not_a_link; else echo absent; fi",
            f"echo {mark}releases",
            f"for d in {q(layout.releases)}/*; do "
            '[ -d "$d" ] || continue; '
            'if [ -f "$d/REVISION" ]; then echo "${d##*/} complete"; else echo "${d##*/}"; fi; '
            "done",
            f"echo {mark}lock",
            f"if [ -d {q(layout.lock)} ]; then echo locked; "
            f"echo age=$(( $(date +%s) - $({gnu.mtime(layout.lock + '/heartbeat')} "
            f"2>/dev/null || {gnu.mtime(layout.lock)}) )); "
            f"cat {q(layout.lock + '/owner.json')} 2>/dev/null; echo; fi",
            f"echo {mark}log",
            f"echo lines=$(awk 'END {{ print NR }}' {q(layout.log)} 2>/dev/null || echo 0)",
            # a last line without its newline must not swallow the next mark
            f"tail -n {LOG_TAIL} {q(layout.log)} 2>/dev/null; echo",
            f"echo {mark}end",
            "true",
        ]
    )


def state_command(layout: Layout) -> Command:
    """Read a target's state, changing nothing (``status``, ``releases``, ``unlock``)."""
    return Command(state_script(layout), description="read state")


def parse_state(output: str, layout: Layout | None = None) -> TargetState:
    """The state printed by ``state_script``; ``current_kind`` is ``unknown`` when the output
    holds no state (the command did not run)."""
    sections: dict[str, list[str]] = {}
    name = ""
    for line in output.splitlines():
        if line.startswith(STATE_MARK):
            name = line[len(STATE_MARK) :]
            sections[name] = []
        elif name:
            sections[name].append(line)
    if "current" not in sections:
        return TargetState(current_kind="unknown")
    kind, current, link = _parse_current(sections["current"], layout)
    releases, complete = set(), set()
    for line in sections.get("releases", []):
        release, _, flag = line.partition(" ")
        if is_release_id(release):
            releases.add(release)
            if flag == "complete":
                complete.add(release)
    lock_lines = sections.get("lock", [])
    locked = bool(lock_lines) and lock_lines[0] == "locked"
    age = None
    if locked and len(lock_lines) > 1 and lock_lines[1].startswith("age="):
        age = int(lock_lines[1][4:]) if lock_lines[1][4:].lstrip("-").isdigit() else None
        lock_lines = lock_lines[1:]
    owner = _parse_json_object("".join(lock_lines[1:])) if locked else None
    log, damaged, start = _parse_log(sections.get("log", []))
    return TargetState(
        current=current,
        releases=frozenset(releases),
        log=log,
        lock_owner=owner,
        locked=locked,
        lock_age=age,
        current_kind=kind,
        current_link=link,
        complete=frozenset(complete),
        damaged=damaged,
        log_start=start,
    )


def render_state(
    *,
    current: str | None = None,
    releases: Iterable[str] = (),
    log: Iterable[Mapping[str, Any]] = (),
    lock_owner: Mapping[str, Any] | None = None,
    lock_age: int = 0,
) -> str:
    """What ``state_script`` prints for a target in this state (for fake targets in tests):
    ``current`` links into releases/, every release is complete."""
    lines = [f"{STATE_MARK}current"]
    lines += ["link", f"releases/{current}"] if current else ["absent"]
    lines.append(f"{STATE_MARK}releases")
    lines += [f"{release} complete" for release in releases]
    lines.append(f"{STATE_MARK}lock")
    if lock_owner is not None:
        lines += ["locked", f"age={lock_age}", json.dumps(dict(lock_owner))]
    entries = [json.dumps(dict(entry)) for entry in log]
    lines += [f"{STATE_MARK}log", f"lines={len(entries)}", *entries, "", f"{STATE_MARK}end"]
    return "\n".join(lines) + "\n"


def _parse_current(lines: list[str], layout: Layout | None) -> tuple[str, str | None, str | None]:
    """(kind, release, raw link) from the ``current`` section."""
    kind = lines[0] if lines else "absent"
    if kind != "link":
        return (kind if kind in ("absent", "not_a_link") else "absent"), None, None
    link = lines[1] if len(lines) > 1 else ""
    path = PurePosixPath(link)
    if not path.is_absolute():
        base = layout.deploy_to if layout else "/"
        path = PurePosixPath(posixpath.normpath(f"{base}/{link}"))
    else:
        path = PurePosixPath(posixpath.normpath(link))
    in_releases = (
        layout is None or str(path.parent) == posixpath.normpath(layout.releases)
    ) and path.parent.name == "releases"
    if in_releases and is_release_id(path.name):
        return "release", path.name, link
    return "foreign", None, link


def _parse_log(lines: list[str]) -> tuple[tuple[Mapping[str, Any], ...], tuple[int, ...], int]:
    """The entries of the log tail, the line numbers that cannot be read, and the first line
    number of the tail."""
    total = 0
    if lines and lines[0].startswith("lines="):
        count = lines[0][len("lines=") :].strip()
        total = int(count) if count.isdigit() else 0
        lines = lines[1:]
    # the script prints one empty line after the tail
    if lines and lines[-1] == "":
        lines = lines[:-1]
    start = max(1, total - len(lines) + 1)
    entries: list[Mapping[str, Any]] = []
    damaged: list[int] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        entry = _parse_json_object(line)
        if entry is None or not entry.keys() >= LOG_KEYS:
            damaged.append(start + offset)
            continue
        entries.append(entry)
    return tuple(entries), tuple(damaged), start


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
