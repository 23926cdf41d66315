"""The on-target layout and the commands that change it.

    <deploy_to>/
      current -> releases/<release>      switched by symlink-to-temp + rename(2)
      releases/<release>/REVISION
      shared/                            shared_dirs, shared_files, .env (0600)
      .deploylib/lock/owner.json         mkdir lock
      .deploylib/releases.jsonl          one JSON line per event

Everything here is pure: functions build ``Command``s or decide from a ``TargetState`` read
from the target. Which release to roll back to and what cleanup may remove are decided from the
release log and ``readlink current``, never from directory order or mtimes.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from deploylib.commands import Command, Upload
from deploylib.secrets import Secret

RELEASE_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[A-Za-z0-9]{1,12})?$")
LOCK_HELD_EXIT = 75
ENV_FILE = ".env"
STATE_MARK = "@@deploylib:"
LOG_TAIL = 5000


def make_release_id(now: datetime, revision: str) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    short = re.sub(r"[^A-Za-z0-9]", "", revision)[:7]
    return f"{stamp}-{short}" if short else stamp


def validate_release_id(release: str) -> str:
    if not RELEASE_ID_RE.match(release):
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

    def upload_path(self, release: str) -> str:
        return f"{self.meta}/uploads/{validate_release_id(release)}.tar.gz"


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class TargetState:
    """What a target holds, read in one round trip."""

    current: str | None = None
    releases: frozenset[str] = frozenset()
    log: tuple[Mapping[str, Any], ...] = ()
    lock_owner: Mapping[str, Any] | None = None
    locked: bool = False
    #: seconds since the lock's heartbeat (or since it was taken)
    lock_age: int | None = None

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

    def history(self) -> list[str]:
        """What was live, as a stack: a deploy pushes its release, a rollback pops back to its
        target (or pushes it, when rolling forward to a release no longer on the stack)."""
        stack: list[str] = []
        for entry in self.log:
            if entry.get("outcome") != "success":
                continue
            release = str(entry.get("release"))
            if entry.get("event") == "rollback" and release in stack:
                del stack[stack.index(release) + 1 :]
            elif entry.get("event") in ("deploy", "rollback"):
                stack.append(release)
        return stack

    def rollback_target(self) -> str | None:
        """The release a rollback goes to: the one live before current, still on disk."""
        stack = self.history()
        below = stack[:-1] if stack and stack[-1] == self.current else stack
        for release in reversed(below):
            if release != self.current and release in self.releases:
                return release
        return None

    def removable(self, keep: int) -> list[str]:
        """Release dirs that cleanup may delete: never current or the rollback target."""
        deployed = [r for r in self.deployed() if r in self.releases]
        protected = set(deployed[-keep:]) if keep > 0 else set()
        protected.add(self.current or "")
        protected.add(self.rollback_target() or "")
        return sorted(r for r in self.releases if r not in protected)


def state_command(layout: Layout) -> Command:
    """Print current, the release dirs, the lock owner and the log tail, in marked sections."""
    q = shlex.quote
    mark = STATE_MARK
    script = "; ".join(
        [
            f"echo {mark}current",
            f"readlink {q(layout.current)} 2>/dev/null",
            f"echo {mark}releases",
            f"ls -1 {q(layout.releases)} 2>/dev/null",
            f"echo {mark}lock",
            f"if [ -d {q(layout.lock)} ]; then echo locked; "
            f"echo age=$(( $(date +%s) - $(stat -c %Y {q(layout.lock + '/heartbeat')} "
            f"2>/dev/null || stat -c %Y {q(layout.lock)}) )); "
            f"cat {q(layout.lock + '/owner.json')} 2>/dev/null; echo; fi",
            f"echo {mark}log",
            f"tail -n {LOG_TAIL} {q(layout.log)} 2>/dev/null",
            "true",
        ]
    )
    return Command(script, description="read state")


def parse_state(output: str) -> TargetState:
    sections: dict[str, list[str]] = {}
    name = ""
    for line in output.splitlines():
        if line.startswith(STATE_MARK):
            name = line[len(STATE_MARK) :]
            sections[name] = []
        elif name:
            sections[name].append(line)
    current_link = next((line for line in sections.get("current", []) if line), None)
    current = PurePosixPath(current_link).name if current_link else None
    releases = frozenset(line for line in sections.get("releases", []) if RELEASE_ID_RE.match(line))
    lock_lines = sections.get("lock", [])
    locked = bool(lock_lines) and lock_lines[0] == "locked"
    age = None
    if locked and len(lock_lines) > 1 and lock_lines[1].startswith("age="):
        age = int(lock_lines[1][4:]) if lock_lines[1][4:].lstrip("-").isdigit() else None
        lock_lines = lock_lines[1:]
    owner = _parse_json_object("".join(lock_lines[1:])) if locked else None
    log = tuple(
        entry for entry in (_parse_json_object(line) for line in sections.get("log", [])) if entry
    )
    return TargetState(
        current=current, releases=releases, log=log, lock_owner=owner, locked=locked, lock_age=age
    )


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------- lock


def lock_command(layout: Layout, owner: Mapping[str, Any]) -> Command:
    """Take the lock with ``mkdir`` and write ``owner.json``; print the state either way.

    Exit ``LOCK_HELD_EXIT`` when another deploy holds it: the state printed names its owner.
    """
    q = shlex.quote
    owner_file = layout.lock + "/owner.json"
    script = (
        f"mkdir -p {q(layout.meta)} || exit 1; "
        f"if mkdir {q(layout.lock)} 2>/dev/null; then "
        f"cat > {q(owner_file)}.tmp && mv -f {q(owner_file)}.tmp {q(owner_file)} "
        f"&& touch {q(layout.lock + '/heartbeat')} || exit 1; "
        "held=0; "
        f"else cat > /dev/null; held={LOCK_HELD_EXIT}; fi; "
        f"{state_command(layout).script}; exit $held"
    )
    return Command(script, stdin=(json.dumps(dict(owner)) + "\n").encode(), description="lock")


def heartbeat_command(layout: Layout, token: str) -> Command:
    """Touch the heartbeat of a lock this deploy still holds (never someone else's)."""
    q = shlex.quote
    return Command(
        f"grep -qF {q(token)} {q(layout.lock + '/owner.json')} 2>/dev/null && "
        f"touch {q(layout.lock + '/heartbeat')}",
        description="heartbeat",
        timeout=10,
    )


def unlock_command(layout: Layout) -> Command:
    return Command(f"rm -rf {shlex.quote(layout.lock)}", description="unlock")


# ---------------------------------------------------------------------------- prepare


def env_file_command(
    layout: Layout, variables: Mapping[str, str | Secret], need_bytes: int = 0
) -> Command:
    """Write ``shared/.env`` with mode 0600, its content fed through stdin.

    With ``need_bytes``, first check that ``deploy_to`` has that much free space (the first
    operation of ``push``: a full disk fails before anything is uploaded)."""
    q = shlex.quote
    target = f"{layout.shared}/{ENV_FILE}"
    content = "".join(
        f"{name}={_dotenv_quote(str(_plain(value)))}\n" for name, value in variables.items()
    )
    script = (
        f"mkdir -p {q(layout.shared)} && (umask 077 && cat > {q(target)}.tmp) && "
        f"chmod 600 {q(target)}.tmp && mv -f {q(target)}.tmp {q(target)}"
    )
    if need_bytes > 0:
        script = f"{space_check(layout.deploy_to, need_bytes)} && {script}"
    has_secret = any(isinstance(v, Secret) for v in variables.values())
    return Command(
        script,
        stdin=Secret(content) if has_secret else content.encode(),
        description="write shared/.env",
    )


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


def _plain(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _dotenv_quote(value: str) -> str:
    """Double-quoted dotenv value: python-dotenv and most loaders read it back exactly."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def artifact_check(artifact: str) -> Command:
    """Pass when the build wrote a non-empty artifact (runs on the controller)."""
    return Command(f"test -s {shlex.quote(artifact)}", description="check artifact")


def upload_artifact(layout: Layout, artifact: str, release: str) -> Upload:
    return Upload(Path(artifact), layout.upload_path(release), 0o600, description="upload artifact")


def unpack_command(
    layout: Layout,
    release: str,
    revision: str,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
) -> Command:
    """Unpack the uploaded artifact into ``releases/<release>``, link shared paths, REVISION."""
    q = shlex.quote
    release_path = layout.release_path(release)
    upload = layout.upload_path(release)
    lines = [
        f"mkdir -p {q(release_path)} {q(layout.shared)}",
        f"tar -xzf {q(upload)} -C {q(release_path)}",
        f"rm -f {q(upload)}",
    ]
    for shared_dir in shared_dirs:
        target, link = f"{layout.shared}/{shared_dir}", f"{release_path}/{shared_dir}"
        lines += [
            f"mkdir -p {q(target)} {q(str(PurePosixPath(link).parent))}",
            f"rm -rf {q(link)}",
            f"ln -s {q(target)} {q(link)}",
        ]
    for shared_file in shared_files:
        target, link = f"{layout.shared}/{shared_file}", f"{release_path}/{shared_file}"
        lines += [
            f"{{ test -e {q(target)} || "
            f"{{ echo {q('shared file missing: ' + target)} >&2; exit 1; }}; }}",
            f"mkdir -p {q(str(PurePosixPath(link).parent))}",
            f"rm -rf {q(link)}",
            f"ln -s {q(target)} {q(link)}",
        ]
    lines.append(f"printf '%s %s\\n' {q(release)} {q(revision)} > {q(release_path + '/REVISION')}")
    return Command(" && ".join(lines), description="unpack")


def remove_release_command(layout: Layout, releases: Iterable[str]) -> Command:
    q = shlex.quote
    paths = []
    for release in releases:
        paths += [q(layout.release_path(release)), q(layout.upload_path(release))]
    return Command(f"rm -rf -- {' '.join(paths)}", description="remove releases")


# ---------------------------------------------------------------------------- switch


def switch_command(layout: Layout, release: str | None) -> Command:
    """Point ``current`` at ``release`` atomically (symlink to a temp name, then rename(2)).

    ``None`` removes ``current``: the state of a target that never had a release.
    """
    q = shlex.quote
    if release is None:
        return Command(f"rm -f {q(layout.current)}", description="unset current")
    validate_release_id(release)
    temporary = f"{layout.deploy_to}/.current-{release}"
    script = (
        f"test -f {q(layout.release_path(release) + '/REVISION')} && "
        f"ln -sfn {q('releases/' + release)} {q(temporary)} && "
        f"mv -T {q(temporary)} {q(layout.current)}"
    )
    return Command(script, description=f"switch to {release}")


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

    def as_json(self) -> str:
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
        return json.dumps(data, sort_keys=False)


def record_command(layout: Layout, entry: LogEntry) -> Command:
    """Append one line to the release log; the line goes through stdin."""
    q = shlex.quote
    return Command(
        f"mkdir -p {q(layout.meta)} && cat >> {q(layout.log)}",
        stdin=(entry.as_json() + "\n").encode(),
        description="record",
    )
