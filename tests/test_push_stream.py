"""The push's one command, run by a real shell: the release's env file, then the artifact,
arrive on stdin; the artifact's sha256 is checked before anything of it is unpacked, and what
is unpacked is the artifact's tree, byte for byte."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from deploylib.backends.local import LocalBackend
from deploylib.commands import Result
from deploylib.digests import file_digest
from deploylib.remote.layout import Layout
from deploylib.remote.release import env_file_text, push_command
from deploylib.secrets import Secret

R = "20260101T000000Z-abc1234"
HOSTILE = "s3cr\u00e9t \"'$(touch /tmp/pwned)`x`\\ end"


def make_artifact(path: Path) -> dict[str, tuple[bytes, int]]:
    """A gzipped tarball of files holding every byte value, with their modes; what it holds."""
    files = {
        "app.py": (b"print('hello')\n", 0o644),
        "bin/run": (b"#!/bin/sh\nexec true\n", 0o755),
        "static/all-bytes.bin": (bytes(range(256)) * 64, 0o600),
        "static/random.bin": (os.urandom(300_000), 0o644),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("current-app.py")
        link.type, link.linkname = tarfile.SYMTYPE, "app.py"
        tar.addfile(link)
    return files


def push(layout: Layout, artifact: Path, digest: str, variables: dict[str, str | Secret]) -> Result:
    command = push_command(
        layout,
        R,
        "abc1234",
        ["log"],
        [],
        artifact=str(artifact),
        digest=digest,
        variables=variables,
    )
    return LocalBackend(default_timeout=30).run(command)


def test_the_env_file_and_the_artifact_arrive_whole(tmp_path: Path) -> None:
    artifact = tmp_path / "app.tar.gz"
    files = make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    variables: dict[str, str | Secret] = {"API_TOKEN": Secret(HOSTILE), "PORT": "8000"}
    result = push(layout, artifact, file_digest(artifact), variables)
    assert result.ok, result
    release = Path(layout.release_path(R))
    for name, (data, mode) in files.items():
        assert (release / name).read_bytes() == data, name
        assert stat.S_IMODE((release / name).stat().st_mode) == mode, name
    assert os.readlink(release / "current-app.py") == "app.py"
    env = release / ".env"
    assert env.read_text() == env_file_text(variables)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert (release / "REVISION").read_text() == f"{R} abc1234\n"
    assert os.readlink(release / "log") == f"{layout.shared}/log"
    assert list(Path(layout.uploads).iterdir()) == []  # nothing received is left behind
    assert not Path("/tmp/pwned").exists()


def test_an_artifact_that_arrives_changed_unpacks_nothing(tmp_path: Path) -> None:
    """A digest that is not the arriving bytes' (a transfer cut short or changed on the way):
    the command fails saying so, no release directory is made, and neither the artifact nor
    the env file (it may hold secrets) stays in ``uploads``."""
    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    other = hashlib.sha256(artifact.read_bytes()[:-1]).hexdigest()
    result = push(layout, artifact, other, {"API_TOKEN": Secret(HOSTILE)})
    assert not result.ok
    assert "sha256 mismatch" in result.stderr
    assert not Path(layout.release_path(R)).exists()
    assert list(Path(layout.uploads).iterdir()) == []
