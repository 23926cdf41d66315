"""Specifies deploylib.remote.release: the switch command, run by a real shell; the artifact's
footprint."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from deploylib.remote import release as remote_release
from deploylib.remote.layout import Layout
from deploylib.remote.release import switch_command


def test_switch_command_is_symlink_then_rename(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "my app"))
    release, other = "20260101T000000Z-abc", "20260102T000000Z-def"
    (tmp_path / "my app" / "releases" / release).mkdir(parents=True)
    (tmp_path / "my app" / "releases" / release / "REVISION").write_text("x\n")
    (tmp_path / "my app" / "releases" / other).mkdir()  # no REVISION: not complete

    assert sh(switch_command(layout, release).line).returncode == 0
    current = tmp_path / "my app" / "current"
    assert os.readlink(current) == f"releases/{release}"
    # an incomplete release is refused, saying what is missing and where current points
    refused = sh(switch_command(layout, other).line)
    assert refused.returncode == 1
    assert f"{other}/REVISION is missing" in refused.stderr
    assert f"current points at releases/{release}" in refused.stderr
    assert os.readlink(current) == f"releases/{release}"
    # putting back a release that was live needs only its directory
    assert sh(switch_command(layout, other, complete=False).line).returncode == 0
    assert os.readlink(current) == f"releases/{other}"
    assert sh(switch_command(layout, None).line).returncode == 0 and not current.is_symlink()
    # a current that is a directory is never replaced, and no temporary link is left behind
    current.mkdir()
    assert sh(switch_command(layout, release).line).returncode == 1
    assert current.is_dir() and not list((tmp_path / "my app").glob(".current-*"))


def sh(script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, text=True)


def test_an_artifact_s_footprint_is_read_from_its_gzip_trailer(tmp_path: Path) -> None:
    """What a gzipped tar unpacks to comes from its trailer, without decompressing; a trailer
    that cannot be right (smaller than the artifact: a tar of 4 GiB or more, kept modulo 2**32)
    makes the members be summed."""
    artifact = tmp_path / "a.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        for name, data in (("zeros", bytes(2_000_000)), ("random", os.urandom(50_000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    size = artifact.stat().st_size
    footprint = remote_release.artifact_footprint(str(artifact))
    assert footprint >= int((size + 2_050_000) * 1.1)  # the tar's headers and padding count too
    assert footprint <= int((size + 2_050_000 + 10 * 512 + 10_240) * 1.1)
    packed = bytearray(artifact.read_bytes())
    packed[-4:] = (1).to_bytes(4, "little")  # a trailer that wrapped around
    artifact.write_bytes(bytes(packed))
    assert remote_release.artifact_footprint(str(artifact)) == int((size + 2_050_000) * 1.1)
    assert remote_release.artifact_footprint(str(tmp_path / "missing")) == 0
