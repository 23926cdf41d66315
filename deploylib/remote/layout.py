"""The on-target layout: its paths, and the release ids that name what is in ``releases/``.

<deploy_to>/
  current -> releases/<release>             switched by symlink-to-temp + rename(2)
  releases/<release>/REVISION               release id and revision: the release is complete
  releases/<release>/.env                   the release's own env file (0600)
  shared/                                   shared_dirs, shared_files
  shared/.env -> <deploy_to>/current/.env   the live release's env file
  .deploylib/lock/owner.json                the deploy lock (a directory renamed into place)
  .deploylib/releases.jsonl                 one JSON line per event, replaced whole
  .deploylib/manifests/<release>            push(delta=True): the files the release's artifact
                                            holds, with their sha256 (one JSON line each)
  .deploylib/manifests/<release>.meta       their modes and owners once unpacked
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

RELEASE_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z(?:-[A-Za-z0-9]{1,12})?")
ENV_FILE = ".env"


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

    @property
    def manifests(self) -> str:
        return f"{self.meta}/manifests"

    def manifest_path(self, release: str) -> str:
        return f"{self.manifests}/{validate_release_id(release)}"

    def lock_stage(self, token: str) -> str:
        """Where a lock is prepared (owner.json, heartbeat) before it is renamed into place."""
        return f"{self.meta}/lock.{check_token(token)}"


def check_token(token: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", token):
        raise ValueError(f"not a lock token: {token!r}")
    return token
