"""Reading a target in one round trip: the command that prints its state in marked sections,
the parser that makes a ``TargetState`` of it, and the parser's inverse (for fake targets)."""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from deploylib.commands import Command
from deploylib.remote import gnu, sparing
from deploylib.remote.layout import Layout, is_release_id
from deploylib.remote.state import LOG_KEYS, TargetState
from deploylib.slots import SlotState, parse_slots

STATE_MARK = "@@deploylib:"
LOG_TAIL = 5000


def state_script(layout: Layout, *, manifest: bool = False, after_lock: bool = False) -> str:
    """Shell that prints current, the release dirs, the lock owner and the log tail, in marked
    sections (with ``manifest``, the live release's manifest too, for a delta push). It changes
    nothing and always ends with exit status 0.

    ``after_lock``: it runs at the end of ``lock_command``, whose ``$rc`` is 0 when the lock
    was just taken: the lock is then this deploy's, its owner one line written a moment ago,
    and its age is not read (two processes fewer)."""
    q = shlex.quote
    mark = STATE_MARK
    owner = q(layout.lock + "/owner.json")
    # each line a file holds is printed behind a "|" (``CONTENT``): none of it can pass for a
    # section's mark. Every part ends in success (`|| :`), also in a shell started with
    # `set -e`: the sections after it, and the lock command's exit status, must come.
    mtime = (
        f"{gnu.mtime(layout.lock + '/heartbeat')} 2>/dev/null || "
        f"{gnu.mtime(layout.lock)} 2>/dev/null || echo unknown"
    )
    held = (
        f'__dl_m="$({mtime})"; '
        'case $__dl_m in ""|*[!0-9]*) echo age=;; '
        "*) echo age=$(( $(date +%s) - __dl_m ));; esac; unset __dl_m; "
        f"sed 's/^/|/' {owner} 2>/dev/null || :; echo"
    )
    if after_lock:
        held = (
            'if [ "$rc" = 0 ]; then '
            f"__dl_o=; {{ IFS= read -r __dl_o < {owner} || :; }} 2>/dev/null; "
            "printf '|%s\\n' \"$__dl_o\"; unset __dl_o; "
            f"else {held}; fi"
        )
    # tested first: no process when there are no slots (the common case)
    slots = q(layout.meta + "/slots.json")
    live_manifest = (
        [
            f"echo {mark}manifest",
            f'__r="$(readlink {q(layout.current)} 2>/dev/null)" && '
            f"sed 's/^/|/' {q(layout.manifests)}/\"${{__r##*/}}\" 2>/dev/null || :; echo",
        ]
        if manifest
        else []
    )
    return "; ".join(
        [
            # a line break in a name or a link's text is never a release's: the link's text is
            # read whole (its own trailing line breaks too), and one that holds a line break
            # is printed as what it is, never as lines that could pass for sections; a release
            # directory whose name holds one is skipped
            "__dl_nl='\n'",
            f"echo {mark}current",
            f"if [ -L {q(layout.current)} ]; then echo link; "
            f'__dl_l="$(readlink {q(layout.current)} 2>/dev/null; echo .)"; '
            '__dl_l="${__dl_l%.}"; __dl_l="${__dl_l%"$__dl_nl"}"; '
            'case $__dl_l in *"$__dl_nl"*) '
            f"printf '|%s\\n' {q(LINE_BREAK_LINK)};; *) printf '|%s\\n' \"$__dl_l\";; esac; "
            "unset __dl_l; "
            f"elif [ -e {q(layout.current)} ]; then echo not_a_link; else echo absent; fi",
            f"echo {mark}releases",
            sparing.globbing(
                f"for d in {q(layout.releases)}/*; do "
                '[ -d "$d" ] || continue; case ${d##*/} in *"$__dl_nl"*) continue;; esac; '
                'if [ -f "$d/REVISION" ]; then printf \'|%s complete\\n\' "${d##*/}"; '
                "else printf '|%s\\n' \"${d##*/}\"; fi; "
                "done"
            )
            + " || :",
            f"echo {mark}lock",
            f"if [ -d {q(layout.lock)} ]; then echo locked; {held}; fi",
            f"echo {mark}log",
            # the count of lines and the last LOG_TAIL of them, in one process; awk ends a
            # last line that has no newline, so it cannot swallow the next mark
            f"if [ -f {q(layout.log)} ]; then LC_ALL=C awk -v n={LOG_TAIL} {q(_TAIL_AWK)} "
            f"{q(layout.log)} 2>/dev/null || :; else echo lines=0; fi; echo",
            f"echo {mark}slots",
            f"[ ! -f {slots} ] || sed 's/^/|/' {slots} 2>/dev/null || :; echo",
            *live_manifest,
            f"echo {mark}end",
            "true",
        ]
    )


#: prints ``lines=N`` (the count of lines), then the last ``n`` lines, each behind a "|"
_TAIL_AWK = (
    "{ t[NR % n] = $0 } "
    'END { print "lines=" NR; '
    'for (i = NR - n + 1; i <= NR; i++) if (i > 0) print "|" t[i % n] }'
)

#: what the state script prints before each line a file holds
CONTENT = "|"

#: what the state read shows for a ``current`` whose link text holds a line break
LINE_BREAK_LINK = "(a link whose text holds a line break)"


def _content(lines: list[str]) -> list[str]:
    """The lines of a file, as a section printed them (each behind ``CONTENT``); a line
    without it (the empty line that ends a section) is left out."""
    return [line[len(CONTENT) :] for line in lines if line.startswith(CONTENT)]


def state_command(layout: Layout) -> Command:
    """Read a target's state, changing nothing (``status``, ``releases``, ``unlock``)."""
    return Command(state_script(layout), description="read state")


def parse_state(output: str, layout: Layout | None = None) -> TargetState:
    """The state printed by ``state_script``; ``current_kind`` is ``unknown`` when the output
    holds no state (the command did not run)."""
    sections: dict[str, list[str]] = {}
    name = ""
    # lines end at "\n" only: a "\r" (or any other line break str.splitlines knows) inside
    # what a file holds cannot start a section
    for line in output.split("\n"):
        if line.startswith(STATE_MARK):
            name = line[len(STATE_MARK) :]
            sections[name] = []
        elif name:
            sections[name].append(line)
    if "current" not in sections:
        return TargetState(current_kind="unknown")
    kind, current, link = _parse_current(sections["current"], layout)
    releases, complete = set(), set()
    for line in _content(sections.get("releases", [])):
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
    owner = _parse_json_object("".join(_content(lock_lines[1:]))) if locked else None
    log, damaged, start = _parse_log(sections.get("log", []))
    return TargetState(
        slots=parse_slots("\n".join(_content(sections.get("slots", [])))),
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
        manifest="\n".join(_content(sections.get("manifest", []))),
    )


def render_state(
    *,
    current: str | None = None,
    releases: Iterable[str] = (),
    log: Iterable[Mapping[str, Any]] = (),
    lock_owner: Mapping[str, Any] | None = None,
    lock_age: int = 0,
    slots: SlotState | None = None,
) -> str:
    """What ``state_script`` prints for a target in this state (for fake targets in tests):
    ``current`` links into releases/, every release is complete."""
    lines = [f"{STATE_MARK}current"]
    lines += ["link", f"{CONTENT}releases/{current}"] if current else ["absent"]
    lines.append(f"{STATE_MARK}releases")
    lines += [f"{CONTENT}{release} complete" for release in releases]
    lines.append(f"{STATE_MARK}lock")
    if lock_owner is not None:
        lines += ["locked", f"age={lock_age}", CONTENT + json.dumps(dict(lock_owner))]
    entries = [CONTENT + json.dumps(dict(entry)) for entry in log]
    lines += [f"{STATE_MARK}log", f"lines={len(entries)}", *entries, ""]
    lines += [
        f"{STATE_MARK}slots",
        *([CONTENT + slots.as_json()] if slots else []),
        f"{STATE_MARK}end",
    ]
    return "\n".join(lines) + "\n"


def _parse_current(lines: list[str], layout: Layout | None) -> tuple[str, str | None, str | None]:
    """(kind, release, raw link) from the ``current`` section."""
    kind = lines[0] if lines else "absent"
    if kind != "link":
        return (kind if kind in ("absent", "not_a_link") else "absent"), None, None
    link = next(iter(_content(lines[1:2])), "")
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
    lines = _content(lines)  # without the empty line that ends the section
    start = max(1, total - len(lines) + 1)
    entries: list[Mapping[str, Any]] = []
    damaged: list[int] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        entry = _parse_json_object(line)
        if (
            entry is None
            or not entry.keys() >= LOG_KEYS
            or not all(isinstance(entry[key], str) for key in LOG_KEYS)
        ):
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
