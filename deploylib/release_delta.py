"""Delta releases, this machine's side: the artifact's manifest (every regular file it holds,
with its sha256, mode and owner), which files a target may take from its live release (the
same in both manifests) and the smaller artifact that carries everything else.

The target makes the release from the two (``remote.delta``): the unchanged files hard-linked
from the live release, checked against their sha256 there, then the smaller artifact unpacked
over them. Whatever does not match makes it ask for the whole artifact instead.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tarfile
import threading
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from deploylib.digests import CHUNK, file_digest


@dataclass(frozen=True)
class Entry:
    """A regular file of an artifact: what a target checks before it takes the file from the
    live release instead of the artifact."""

    path: str
    sha256: str
    mode: int
    uid: int
    gid: int

    def line(self) -> str:
        return json.dumps([self.path, self.sha256, self.mode, self.uid, self.gid])


@dataclass(frozen=True)
class Manifest:
    """The regular files of an artifact by path; ``text`` is how a target keeps it."""

    entries: dict[str, Entry]

    @cached_property
    def text(self) -> str:
        return "".join(entry.line() + "\n" for entry in sorted(self.entries.values(), key=_key))


def _key(entry: Entry) -> bytes:
    return entry.path.encode("utf-8", "surrogateescape")


_manifests: dict[str, Manifest | None] = {}
_deltas: dict[tuple[str, str], Path] = {}
#: the members of each decompressed artifact, as read for its manifest
_members: dict[Path, list[tarfile.TarInfo]] = {}
_lock = threading.Lock()


def manifest_of(artifact: Path) -> Manifest | None:
    """The manifest of a gzipped tar artifact, read once per process; None when the artifact
    holds what a delta cannot carry (hard links, devices) or is no tar at all."""
    digest = file_digest(artifact)
    with _lock:
        if digest not in _manifests:
            _manifests[digest] = _read_manifest(artifact)
        return _manifests[digest]


def manifest_of_built(artifact: str) -> Manifest | None:
    """``manifest_of`` the artifact the build wrote; None when there is none (a dry run)."""
    try:
        return manifest_of(Path(artifact))
    except OSError:
        return None


def _read_manifest(artifact: Path) -> Manifest | None:
    entries: dict[str, Entry] = {}
    try:
        tar_path = _plain_tar(artifact)
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if member.isdir() or member.issym():
                    continue
                if not member.isreg():
                    return None  # hard links, devices, fifos: the whole artifact
                path = _normal(member.name)
                if path is None or path in entries:
                    return None
                source = tar.extractfile(member)
                if source is None:
                    return None
                digest = hashlib.sha256()
                while block := source.read(CHUNK):
                    digest.update(block)
                entries[path] = Entry(
                    path, digest.hexdigest(), member.mode & 0o7777, member.uid, member.gid
                )
            _members[tar_path] = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return None
    return Manifest(entries)


def _plain_tar(artifact: Path) -> Path:
    """The artifact's tar, decompressed once next to it (the delta is then cut from it with
    seeks over the files it leaves out, instead of a second decompression)."""
    with artifact.open("rb") as file:
        if file.read(2) != b"\x1f\x8b":
            return artifact
    plain = artifact.with_name(artifact.name + ".tar")
    if not plain.exists():
        partial = plain.with_name(plain.name + ".part")
        with gzip.open(artifact, "rb") as source, partial.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        partial.replace(plain)
    return plain


def _normal(name: str) -> str | None:
    """A member's path as ``find -printf %P`` prints it on the target; None for one that is
    not plainly inside the release (absolute, ``..``)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or name.startswith("/"):
        return None
    return "/".join(parts)


def parse_manifest(text: str) -> dict[str, Entry]:
    """A manifest as a target keeps it; what cannot be read is left out (its files are sent)."""
    entries: dict[str, Entry] = {}
    for line in text.splitlines():
        try:
            path, sha, mode, uid, gid = json.loads(line)
        except (ValueError, TypeError):  # not JSON, or not five values
            continue
        texts, numbers = (path, sha), (mode, uid, gid)
        if all(isinstance(v, str) for v in texts) and all(type(v) is int for v in numbers):
            entries[path] = Entry(path, sha, mode, uid, gid)
    return entries


def unchanged(new: Manifest, previous_text: str) -> list[str]:
    """The paths whose file is the same, sha256, mode and owner, in both manifests; never one
    with a carriage return in it (``sha256sum -c`` would read it as a line's end)."""
    previous = parse_manifest(previous_text)
    return sorted(
        (
            path
            for path, entry in new.entries.items()
            if previous.get(path) == entry and "\r" not in path
        ),
        key=lambda path: path.encode("utf-8", "surrogateescape"),
    )


def delta_artifact(artifact: Path, linked: list[str]) -> Path:
    """The artifact without the regular files in ``linked`` (everything else as it was:
    directories, links, changed files, with their modes, owners and times), written next to
    it once per set of linked files."""
    listed = "\0".join(linked).encode("utf-8", "surrogateescape")
    key = (file_digest(artifact), hashlib.sha256(listed).hexdigest())
    with _lock:
        known = _deltas.get(key)
        if known is not None and known.exists():
            return known
        target = artifact.with_name(f"{artifact.name}.delta-{key[1][:16]}.tar.gz")
        skip = set(linked)
        plain = _plain_tar(artifact)
        members = _members.get(plain)
        if members is None:
            with tarfile.open(plain, "r:") as tar:
                members = _members[plain] = tar.getmembers()
        with (
            plain.open("rb") as source,
            tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as out,
        ):
            for member in members:
                if member.isdir():
                    continue
                if not member.isreg():
                    out.addfile(member)
                elif _normal(member.name) not in skip:
                    source.seek(member.offset_data)  # its data, read by addfile: size bytes
                    out.addfile(member, source)
            # directories last, the deepest first: their modes (0555 too) and times are set
            # once everything inside is in place, as a full unpack's delayed settings do
            folders = [m for m in members if m.isdir()]
            for member in sorted(folders, key=lambda m: -len(_normal(m.name) or "")):
                out.addfile(member)
        _deltas[key] = target
        return target
