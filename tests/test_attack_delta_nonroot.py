"""The delta push's target side run by an unprivileged user (nobody, through setpriv), with
GNU tar and coreutils: permission effects root never sees."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploylib.commands import FALLBACK_EXIT, Command
from deploylib.digests import file_digest
from deploylib.release_delta import delta_artifact, manifest_of, unchanged
from deploylib.remote.delta import delta_push_command
from deploylib.remote.layout import Layout
from deploylib.remote.release import push_command
from tests.test_delta_releases import tree

A, B = "20260101T000000Z-aaa1111", "20260102T000000Z-bbb2222"
NOBODY = 65534
#: an artifact's members: (name, bytes or None for a directory, mode)
Members = list[tuple[str, bytes | None, int]]
Tree = dict[str, tuple[str, int, bytes]]
#: what ``_push_pair`` gives: the release's tree, a full unpack's, the files linked
Pushed = tuple[Tree, Tree, list[str]]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)


def nobody(script: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``script`` run by /bin/sh as nobody, umask 022, ``data`` on its stdin."""
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "/bin/sh",
            "-c",
            "umask 022; " + script,
        ],
        input=data,
        capture_output=True,
        timeout=60,
    )


def as_nobody(command: Command) -> subprocess.CompletedProcess[bytes]:
    data = command.stdin_bytes() or b""
    if command.stdin_file is not None:
        data += Path(command.stdin_file).read_bytes()
    return nobody(command.full_line, data)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    path.chmod(0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    subprocess.run(["chmod", "-R", "u+w", str(path)])
    shutil.rmtree(path)


def test_a_read_only_directory_in_the_artifact(base: Path) -> None:
    """A directory the artifact makes read-only (0555) holding one unchanged and one changed
    file, as an ordinary user: the delta's links make the new directory writable, and the
    smaller artifact sets 0555 only once the changed file is in (its directories come last):
    the release is what a full unpack makes."""

    def members(changed: bytes) -> Members:
        return [
            ("ro", None, 0o555),
            ("ro/same", b"same\n", 0o644),
            ("ro/changed", changed, 0o644),
            ("top", b"top\n", 0o644),
        ]

    got, full, linked = _push_pair(base, members(b"one\n"), members(b"two\n"))
    assert linked == ["ro/same", "top"]
    assert got == full


def _push_pair(base: Path, first_members: Members, second_members: Members) -> Pushed:
    """Push the first artifact whole as nobody, then the second as a delta (the whole one if
    it asks): the release's tree, a full unpack's tree, and the files the delta linked."""
    layout = Layout(str(base / "srv"))
    arts = []
    for index, members in enumerate((first_members, second_members)):
        path = base / f"b{index}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data, mode in members:
                info = tarfile.TarInfo(name)
                info.mode, info.uid, info.gid = mode, NOBODY, NOBODY
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        arts.append(path)
    m1 = manifest_of(arts[0])
    assert m1 is not None

    def pushing(release: str, revision: str, artifact: Path, manifest: str) -> Command:
        """The whole artifact's push of ``release``, as a deploy sends it."""
        return push_command(
            layout,
            release,
            revision,
            [],
            [],
            artifact=str(artifact),
            digest=file_digest(artifact),
            variables={"X": "1"},
            manifest=manifest,
        )

    done = as_nobody(pushing(A, "a", arts[0], m1.text))
    assert done.returncode == 0, done.stderr
    os.symlink(f"releases/{A}", layout.current)
    subprocess.run(["chown", "-h", f"{NOBODY}:{NOBODY}", layout.current], check=True)
    m2 = manifest_of(arts[1])
    assert m2 is not None
    linked = unchanged(m2, Path(layout.manifest_path(A)).read_text())
    assert linked
    delta = delta_artifact(arts[1], linked)
    whole = pushing(B, "b", arts[1], m2.text)
    command = delta_push_command(
        layout,
        B,
        "b",
        [],
        [],
        previous=A,
        linked=[(p, m2.entries[p].sha256) for p in linked],
        artifact=str(delta),
        digest=file_digest(delta),
        manifest=m2.text,
        fallback=whole,
        variables={"X": "1"},
    )
    result = as_nobody(command)
    if result.returncode == FALLBACK_EXIT:
        result = as_nobody(whole)
    assert result.returncode == 0, result.stderr
    full = base / "full"
    full.mkdir()
    os.chown(full, NOBODY, NOBODY)
    unpacked = nobody(f"tar -xzf {arts[1]} -C {full}")
    assert unpacked.returncode == 0, unpacked.stderr
    skip = frozenset({"REVISION", ".env"})
    return tree(Path(layout.release_path(B)), skip=skip), tree(full, skip=skip), linked


def test_an_artifact_without_directory_entries(base: Path) -> None:
    """The previous artifact made d/ 0700; the new one has no entry for d/ (a tar of listed
    files: `git ls-files | tar -T -`): a full unpack makes d/ 0755 (umask), and so does the
    delta, whose links do not copy the live release's directory modes."""
    got, full, _ = _push_pair(
        base,
        [("d", None, 0o700), ("d/f", b"f\n", 0o644), ("g", b"1\n", 0o644)],
        [("d/f", b"f\n", 0o644), ("g", b"2\n", 0o644)],
    )
    assert got["d"] == full["d"]
