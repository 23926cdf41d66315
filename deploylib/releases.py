"""The on-target layout and the commands that change it.

    <deploy_to>/
      current -> releases/<release>      switched by symlink-to-temp + rename(2)
      releases/<release>/REVISION        release id and revision: the release is complete
      releases/<release>/.env            the release's own env file (0600): config follows code
      shared/                            shared_dirs, shared_files
      shared/.env -> <deploy_to>/current/.env   the live release's env file
      .deploylib/lock/owner.json         the deploy lock (a directory renamed into place)
      .deploylib/releases.jsonl          one JSON line per event, replaced whole on every write

Everything here is pure: functions build ``Command``s or decide from a ``TargetState`` read
from the target. Which release to roll back to and what cleanup may remove are decided from the
release log and ``readlink current``, never from directory order or mtimes; when the log cannot
be read whole or does not explain what is on disk, nothing is removed and nothing is guessed.

Every command that changes a target after it was locked starts with ``lock_guard``: it runs only
while the lock's ``owner.json`` still holds this deploy's token, so a deploy that lost its lock
(removed by hand, taken by another deploy) changes nothing more there.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from deploylib import envfile
from deploylib.commands import Command, Upload
from deploylib.secrets import Secret

RELEASE_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z(?:-[A-Za-z0-9]{1,12})?")
#: the lock command's exit status when another deploy holds the lock
LOCK_HELD_EXIT = 75
#: a guarded command's exit status when this deploy no longer holds the lock
LOCK_LOST_EXIT = 76
ENV_FILE = ".env"
STATE_MARK = "@@deploylib:"
LOG_TAIL = 5000
#: the keys every release-log line has
LOG_KEYS = frozenset({"event", "outcome", "release"})


def make_release_id(now: datetime, revision: str) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    short = re.sub(r"[^A-Za-z0-9]", "", revision)[:7]
    return f"{stamp}-{short}" if short else stamp


def is_release_id(text: str) -> bool:
    return RELEASE_ID_RE.fullmatch(text) is not None


def validate_release_id(release: str) -> str:
    if not is_release_id(release):
        raise ValueError(f"not a release id: {release!r} (expected YYYYmmddTHHMMSSZ[-rev])")
    return release


@dataclass(frozen=True)
class Layout:
    """Paths on one target."""

    deploy_to: str

    @property
    def releases(self) -> str:
        return f"{self.deploy_to}/releases"

    def release_path(self, release: str) -> str:
        return f"{self.releases}/{validate_release_id(release)}"

    @property
    def current(self) -> str:
        return f"{self.deploy_to}/current"

    @property
    def shared(self) -> str:
        return f"{self.deploy_to}/shared"

    @property
    def meta(self) -> str:
        return f"{self.deploy_to}/.deploylib"

    @property
    def lock(self) -> str:
        return f"{self.meta}/lock"

    @property
    def log(self) -> str:
        return f"{self.meta}/releases.jsonl"

    @property
    def uploads(self) -> str:
        return f"{self.meta}/uploads"

    def upload_path(self, release: str) -> str:
        return f"{self.uploads}/{validate_release_id(release)}.tar.gz"

    def lock_stage(self, token: str) -> str:
        """Where a lock is prepared (owner.json, heartbeat) before it is renamed into place."""
        return f"{self.meta}/lock.{_token(token)}"


def _token(token: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", token):
        raise ValueError(f"not a lock token: {token!r}")
    return token


# ---------------------------------------------------------------------------- state


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
            f"echo age=$(( $(date +%s) - $(stat -c %Y {q(layout.lock + '/heartbeat')} "
            f"2>/dev/null || stat -c %Y {q(layout.lock)}) )); "
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


# ---------------------------------------------------------------------------- lock


def lock_guard(layout: Layout, token: str) -> str:
    """Shell that fails with ``LOCK_LOST_EXIT`` unless this deploy still holds the lock."""
    q = shlex.quote
    message = "the deploy lock here is no longer this deploy's (removed or taken over)"
    # `command -p`: the standard PATH, whatever PATH the project's env files set
    owner = q(layout.lock + "/owner.json")
    return (
        f"{{ command -p grep -qF {q(_token(token))} {owner} 2>/dev/null || "
        f"{{ echo {q(message)} >&2; exit {LOCK_LOST_EXIT}; }}; }}"
    )


def guard_for(layout: Layout, token: str | None) -> str:
    """The ``Command.guard`` of a change made under the lock ``token`` ("" without one)."""
    return lock_guard(layout, token) if token else ""


def lock_command(layout: Layout, owner: Mapping[str, Any]) -> Command:
    """Take the lock, then print the state (``state_script``) whatever happened.

    The lock is prepared whole in a directory of its own (``owner.json``, ``heartbeat``) and
    renamed into place with rename(2): it exists with its owner or not at all, also when the
    disk is full or the command is cut off. Exit 0 when taken, ``LOCK_HELD_EXIT`` when another
    deploy holds it (the state printed names the owner), 1 when it could not be written.
    """
    q = shlex.quote
    token = str(owner["token"])
    stage = layout.lock_stage(token)
    owner_file = f"{stage}/owner.json"
    script = (
        f"if ! {{ mkdir -p {q(layout.meta)} && rm -rf {q(stage)} && mkdir {q(stage)} && "
        f"cat > {q(owner_file)} && touch {q(stage + '/heartbeat')}; }}; then "
        f"rm -rf {q(stage)}; echo {q('could not write the deploy lock in ' + layout.meta)} >&2; "
        "rc=1; "
        f"elif [ ! -e {q(layout.lock)} ] && mv -T {q(stage)} {q(layout.lock)} 2>/dev/null; "
        "then rc=0; "
        f"else rm -rf {q(stage)}; rc={LOCK_HELD_EXIT}; fi; "
        f"{state_script(layout)}; exit $rc"
    )
    return Command(script, stdin=(json.dumps(dict(owner)) + "\n").encode(), description="lock")


def heartbeat_command(layout: Layout, token: str) -> Command:
    """Touch the heartbeat of a lock this deploy still holds (never someone else's); fails with
    ``LOCK_LOST_EXIT`` when the lock is no longer ours."""
    return Command(
        f"touch {shlex.quote(layout.lock + '/heartbeat')}",
        description="heartbeat",
        timeout=10,
        guard=guard_for(layout, token),
    )


def unlock_command(layout: Layout, token: str | None = None) -> Command:
    """Remove the lock if it is ``token``'s (and the stage a cut-off lock command may have
    left); without a token, whatever lock there is (``unlock --force``)."""
    q = shlex.quote
    if token is None:
        return Command(f"rm -rf {q(layout.lock)}", description="unlock")
    owner_file = q(layout.lock + "/owner.json")
    script = (
        f"rm -rf {q(layout.lock_stage(token))}; "
        f"if command -p grep -qF {q(_token(token))} {owner_file} 2>/dev/null; then "
        f"rm -rf {q(layout.lock)}; "
        f"elif [ -e {q(layout.lock)} ]; then echo 'the lock is held by another deploy now' >&2; "
        "exit 1; fi"
    )
    return Command(script, description="unlock")


def check_lock_command(layout: Layout, token: str) -> Command:
    """Pass while this deploy holds the lock (before anything goes live)."""
    return Command("true", description="check lock", timeout=30, guard=guard_for(layout, token))


# ---------------------------------------------------------------------------- prepare


def env_link(layout: Layout) -> str:
    """Where ``shared/.env`` points: the live release's env file (absolute: ``shared`` may
    itself be a link elsewhere)."""
    return f"{layout.current}/{ENV_FILE}"


def server_env_test(layout: Layout) -> str:
    """Shell that passes when ``shared/.env`` is config kept on the server (a file, or a link to
    one, that is not the link deploylib makes): with no env files in the project, deploylib
    leaves it as it is."""
    q = shlex.quote
    shared_env = q(f"{layout.shared}/{ENV_FILE}")
    link = q(env_link(layout))
    return f'{{ [ -e {shared_env} ] && [ "$(readlink {shared_env})" != {link} ]; }}'


def prepare_command(
    layout: Layout, token: str | None, need_bytes: int = 0, *, has_env: bool = True
) -> Command:
    """The first operation of ``push``: check free space, clear uploads that interrupted
    deploys left, and make ``shared/.env`` the link to the live release's env file.

    ``has_env``: the project has env-file variables, so deploylib manages the env file. A
    ``shared/.env`` that is a file (written by deploylib before releases had their own) is then
    first copied into every release that links to it or has no env file (so the live release
    keeps reading the same values), then replaced by the link; a copy of it stays as
    ``shared/.env.before-release-env``. Without env-file variables, a ``shared/.env`` kept on the
    server by hand is left alone (see ``server_env_test``)."""
    q = shlex.quote
    shared_env = f"{layout.shared}/{ENV_FILE}"
    keep = f"{shared_env}.before-release-env"
    link = f"{shared_env}.link"
    lines = []
    if need_bytes > 0:
        lines.append(space_check(layout.deploy_to, need_bytes))
    lines += [
        f"rm -rf {q(layout.uploads)}",
        f"mkdir -p {q(layout.uploads)} {q(layout.shared)} {q(layout.releases)}",
    ]
    target = q(env_link(layout))
    make_link = (
        f"{{ if [ ! -L {q(shared_env)} ] || "
        f'[ "$(readlink {q(shared_env)})" != {target} ]; then '
        f"rm -rf {q(link)} && ln -s {target} {q(link)} && "
        f"mv -T {q(link)} {q(shared_env)}; fi; }}"
    )
    if has_env:
        lines += [
            f"if {server_env_test(layout)}; then "
            f'for r in {q(layout.releases)}/*/; do [ -d "$r" ] || continue; e="$r{ENV_FILE}"; '
            f'if {{ [ -L "$e" ] && [ "$e" -ef {q(shared_env)} ]; }} || '
            '{ [ ! -e "$e" ] && [ ! -L "$e" ]; }; then '
            f'cp -p {q(shared_env)} "$e.tmp" && mv -fT "$e.tmp" "$e" || exit 1; fi; done; '
            f"cp -p {q(shared_env)} {q(keep)} || exit 1; fi",
            make_link,
        ]
    else:
        lines.append(f"{{ {server_env_test(layout)} || {make_link}; }}")
    return Command(" && ".join(lines), description="prepare target", guard=guard_for(layout, token))


def space_check(directory: str, need_bytes: int) -> str:
    """Shell that fails, saying how much is free, unless ``directory`` has ``need_bytes`` free."""
    need_kb = need_bytes // 1024 + 1
    message = (
        f"not enough free space in {directory}: this release needs {need_kb // 1024 + 1} MiB, "
    )
    return (
        f"avail=$(df -Pk {shlex.quote(directory)} | awk 'NR==2 {{print $4}}') && "
        f'{{ [ "$avail" -ge {need_kb} ] || '
        f'{{ echo {shlex.quote(message)}"$((avail / 1024)) MiB are free" >&2; exit 1; }}; }}'
    )


def artifact_footprint(artifact: str) -> int:
    """Bytes a release of this artifact takes on a target: the upload plus what it unpacks to,
    with a tenth more for the file system's overhead; 0 when there is no artifact (dry run)."""
    import tarfile

    path = Path(artifact)
    if not path.is_file():
        return 0
    try:
        with tarfile.open(path, "r:*") as tar:
            unpacked = sum(member.size for member in tar)
    except (tarfile.TarError, OSError):
        unpacked = 0
    return int((path.stat().st_size + unpacked) * 1.1)


def env_file_text(variables: Mapping[str, str | Secret]) -> str:
    """The release's env file: one ``NAME="value"`` line per variable, read back exactly by
    python-dotenv."""
    return envfile.render(variables)


def artifact_check(artifact: str) -> Command:
    """Pass when the build wrote a non-empty artifact (runs on the controller)."""
    return Command(f"test -s {shlex.quote(artifact)}", description="check artifact")


def upload_artifact(layout: Layout, artifact: str, release: str) -> Upload:
    return Upload(Path(artifact), layout.upload_path(release), 0o600, description="upload artifact")


def link_shared(release_path: str, shared: str, relative: str, *, is_file: bool) -> list[str]:
    """Shell lines that make ``release_path/relative`` a link to ``shared/relative``.

    Nothing is ever made or removed through a symlink: each directory between the release and
    the link is checked not to be a link (from the artifact, or an earlier shared path) before
    it is used, and the link's own place is removed only as what it is: a link or a file with
    ``rm -f``, a real directory of the release with ``rm -rf``."""
    q = shlex.quote
    target, link = f"{shared}/{relative}", f"{release_path}/{relative}"
    lines = []
    if is_file:
        lines.append(
            f"{{ test -e {q(target)} || "
            f"{{ echo {q('shared file missing: ' + target)} >&2; exit 1; }}; }}"
        )
    else:
        lines.append(f"mkdir -p {q(target)}")
    for parent in reversed(PurePosixPath(relative).parents[:-1]):
        place = f"{release_path}/{parent}"
        escape = f"{place} is a symlink: not linking {relative} through it"
        lines += [
            f"{{ [ ! -L {q(place)} ] || {{ echo {q(escape)} >&2; exit 1; }}; }}",
            f"mkdir -p {q(place)}",
        ]
    lines += [
        f"{{ if [ -L {q(link)} ] || [ ! -d {q(link)} ]; then rm -f {q(link)}; "
        f"else rm -rf {q(link)}; fi; }}",
        f"ln -s {q(target)} {q(link)}",
    ]
    return lines


def unpack_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    variables: Mapping[str, str | Secret] | None = None,
    token: str | None = None,
) -> Command:
    """Unpack the uploaded artifact into ``releases/<release>``, link shared paths, write the
    release's env file (from stdin, mode 0600) and, last, REVISION: a release with REVISION is
    complete. With no ``variables`` and a ``shared/.env`` kept on the server by hand, that file
    stays the config: linked as ``.env`` when listed in ``shared_files``, else left to the app."""
    q = shlex.quote
    release_path = layout.release_path(release)
    upload = layout.upload_path(release)
    env_path = f"{release_path}/{ENV_FILE}"
    revision_path = f"{release_path}/REVISION"
    lines = [
        f"mkdir -p {q(release_path)}",
        f"tar -xzf {q(upload)} -C {q(release_path)}",
        f"rm -f {q(upload)}",
    ]
    for shared_dir in shared_dirs:
        lines += link_shared(release_path, layout.shared, shared_dir, is_file=False)
    for shared_file in shared_files:
        if shared_file == ENV_FILE:
            continue  # the release's own env file, written below
        lines += link_shared(release_path, layout.shared, shared_file, is_file=True)
    write_env = (
        f"rm -f {q(env_path + '.tmp')} && "
        f"(umask 077 && cat > {q(env_path + '.tmp')}) && "
        f"mv -fT {q(env_path + '.tmp')} {q(env_path)}"
    )
    if variables:
        lines.append(write_env)
    else:
        # no env files in the project: a shared/.env kept on the server stays the config
        server_env = "cat > /dev/null"
        if ENV_FILE in shared_files:
            server_env += " && " + " && ".join(
                link_shared(release_path, layout.shared, ENV_FILE, is_file=True)
            )
        lines.append(f"if {server_env_test(layout)}; then {server_env}; else {write_env}; fi")
    lines += [
        f"rm -f {q(revision_path + '.tmp')}",
        f"printf '%s %s\\n' {q(release)} {q(revision)} > {q(revision_path + '.tmp')}",
        f"mv -fT {q(revision_path + '.tmp')} {q(revision_path)}",
    ]
    content = env_file_text(variables or {})
    has_secret = any(isinstance(v, Secret) for v in (variables or {}).values())
    return Command(
        " && ".join(lines),
        stdin=Secret(content) if has_secret else content.encode(),
        description="unpack",
        guard=guard_for(layout, token),
    )


def remove_release_command(
    layout: Layout, releases: Iterable[str], token: str | None = None
) -> Command:
    """Remove release dirs and their uploads (also a partial upload) — never the release
    ``current`` points at, whatever the controller believes: that one is kept, and said."""
    q = shlex.quote
    lines = [f'live="$(readlink {q(layout.current)} 2>/dev/null)"', "rc=0"]
    for release in releases:
        upload = layout.upload_path(release)
        lines.append(
            f'if [ "${{live##*/}}" = {q(release)} ]; then '
            f"echo {q(f'kept {release}: current points at it')} >&2; rc=1; "
            f"else rm -rf -- {q(layout.release_path(release))} {q(upload)} {q(upload + '.part')} "
            "|| rc=1; fi"
        )
    lines.append("exit $rc")
    return Command("; ".join(lines), description="remove releases", guard=guard_for(layout, token))


# ---------------------------------------------------------------------------- switch


def switch_command(
    layout: Layout, release: str | None, token: str | None = None, *, complete: bool = True
) -> Command:
    """Point ``current`` at ``release`` atomically (symlink to a temp name, then rename(2)).

    With ``complete`` the release must have its REVISION (a new release, or a rollback target);
    without, its directory must exist (putting back the release that was live). ``None`` removes
    ``current``: the state of a target that never had a release. On failure ``current`` is left
    as it was, no temporary link remains, and the message says what is missing and what
    ``current`` points at."""
    q = shlex.quote
    if release is None:
        return Command(
            f"rm -f {q(layout.current)}",
            description="unset current",
            guard=guard_for(layout, token),
        )
    path = layout.release_path(release)
    temporary = f"{layout.deploy_to}/.current-{release}"

    def fail(text: str) -> str:
        now = f'"$(readlink {q(layout.current)} 2>/dev/null || echo "(none)")"'
        return f"{{ echo {q(text + '; current points at ')}{now} >&2; exit 1; }}"

    checks = [f"{{ [ -d {q(path)} ] || {fail(path + ' is missing')}; }}"]
    if complete:
        missing = f"{path}/REVISION is missing (not a complete release)"
        checks.append(f"{{ [ -f {q(path + '/REVISION')} ] || {fail(missing)}; }}")
    move = (
        f"{{ ln -sfn {q('releases/' + release)} {q(temporary)} && "
        f"mv -T {q(temporary)} {q(layout.current)}; }} || "
        f"{{ rm -f {q(temporary)}; {fail('could not switch ' + layout.current)}; }}"
    )
    script = " && ".join([*checks, move])
    return Command(script, description=f"switch to {release}", guard=guard_for(layout, token))


# ---------------------------------------------------------------------------- log


@dataclass(frozen=True)
class LogEntry:
    """One line of ``releases.jsonl``. ``current`` is what current points to afterwards."""

    event: str  # deploy | rollback
    outcome: str  # success | failed | rolled_back
    release: str
    revision: str
    current: str | None
    previous: str | None
    user: str
    controller: str
    time: str
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "time": self.time,
            "event": self.event,
            "outcome": self.outcome,
            "release": self.release,
            "revision": self.revision,
            "current": self.current,
            "previous": self.previous,
            "user": self.user,
            "controller": self.controller,
        }
        if self.error:
            data["error"] = self.error
        data.update(self.extra)
        return data

    def as_json(self) -> str:
        # ensure_ascii: one line whatever the text holds (U+2028 and friends included)
        return json.dumps(self.as_dict(), ensure_ascii=True)


def record_command(layout: Layout, entry: LogEntry, token: str | None = None) -> Command:
    """Append one line to the release log, all or nothing: the log is copied with the new line
    to a temporary file that replaces it by rename(2). A full disk leaves the log as it was; a
    last line without its newline (from elsewhere) gets one first, so no line is glued to it."""
    q = shlex.quote
    log = q(layout.log)
    suffix = _token(token) if token else "w"
    temporary = q(f"{layout.log}.{suffix}.tmp")
    script = (
        f"mkdir -p {q(layout.meta)} && "
        f"( {{ [ ! -e {log} ] || cat {log} || exit 1; "
        f'if [ -s {log} ] && [ -n "$(tail -c 1 {log})" ]; then echo || exit 1; fi; '
        f"cat || exit 1; }} > {temporary} ) && mv -f {temporary} {log} || "
        f"{{ rm -f {temporary}; echo {q('could not write the release log ' + layout.log)} >&2; "
        "exit 1; }"
    )
    return Command(
        script,
        stdin=(entry.as_json() + "\n").encode(),
        description="record",
        guard=guard_for(layout, token),
    )
