"""Paths from deploy.toml: ``deploy_to`` resolved for the environment's hosts, and the shared
paths checked to stay inside the release and not to overlap."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from deploylib.errors import ConfigError
from deploylib.hosts import Host

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: the files deploylib writes into each release to say what it is (REVISION last, when the
#: release is complete; IMAGE for a container release): never a shared path
RELEASE_MARKS = frozenset({"REVISION", "IMAGE"})


def resolve_deploy_to(
    deploy_to: str, hosts: tuple[Host, ...], project_dir: Path, file: str, env: str
) -> str:
    if CONTROL_RE.search(deploy_to):
        raise ConfigError(
            "control characters are not allowed", file=file, key=f"environments.{env}.deploy_to"
        )
    if deploy_to.startswith("~"):
        if all(h.is_local for h in hosts):
            deploy_to = str(Path(deploy_to).expanduser())
        else:
            raise ConfigError(
                "must be an absolute path on SSH hosts",
                file=file,
                key=f"environments.{env}.deploy_to",
            )
    path = PurePosixPath(deploy_to)
    if not path.is_absolute():
        if any(not h.is_local for h in hosts):
            raise ConfigError(
                "must be an absolute path on SSH hosts",
                file=file,
                key=f"environments.{env}.deploy_to",
            )
        path = PurePosixPath(project_dir) / path
    # normpath keeps a leading "//" (POSIX leaves its meaning open; on Linux it is "/")
    normalised = "/" + os.path.normpath(str(path)).lstrip("/")
    if normalised == "/":
        raise ConfigError(
            "may not be the root directory", file=file, key=f"environments.{env}.deploy_to"
        )
    return normalised


def shared_path(value: str, file: str, key: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or CONTROL_RE.search(value):
        raise ConfigError(
            f"{value!r} must be a relative path inside the release (no '..', not absolute)",
            file=file,
            key=key,
        )
    normalised = str(path)
    if normalised in (".", ""):
        raise ConfigError(f"{value!r} names the release itself", file=file, key=key)
    if path.parts[0] in RELEASE_MARKS:
        raise ConfigError(
            f"{value!r} is deploylib's own file in each release ({path.parts[0]} says what the "
            "release is, written last): it cannot be shared",
            file=file,
            key=key,
        )
    return normalised


def refuse_overlapping_shared_paths(
    shared: Mapping[str, list[tuple[str, str]]], file: str, key_of: Callable[[str], str]
) -> None:
    """Refuse a shared path that equals, or lies inside, another (dirs and files together).

    Each shared path is a symlink from the release into ``shared/``; a path inside another
    would be linked inside a directory that is itself a link into ``shared/``, and replacing it
    there can delete shared data."""
    entries = [(name, value, path) for name, items in shared.items() for value, path in items]
    for index, (name, value, path) in enumerate(entries):
        for other_name, other_value, other_path in entries[:index]:
            relation = _overlap(path, other_path)
            if relation:
                raise ConfigError(
                    f"{value!r} ({name}) {relation} {other_value!r} ({other_name}): "
                    "shared paths may not overlap",
                    file=file,
                    key=key_of(name),
                )


def _overlap(path: str, other: str) -> str | None:
    """How two normalised relative paths overlap: "is the same path as", "is inside", ..."""
    parts, other_parts = PurePosixPath(path).parts, PurePosixPath(other).parts
    if parts == other_parts:
        return "is the same path as"
    if parts[: len(other_parts)] == other_parts:
        return "is inside"
    if other_parts[: len(parts)] == parts:
        return "contains"
    return None
