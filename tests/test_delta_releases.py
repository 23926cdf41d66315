"""Delta releases (``push(delta=True)``) on this machine's real shell and GNU tools: the second
deploy takes unchanged files from the live release as hard links and gets the rest from a
smaller artifact; the release it makes is the artifact's tree, file for file, mode for mode,
link for link, as a full unpack makes it; the live release's files are never written into;
and a live release whose files changed since makes it send the whole artifact instead."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command
from deploylib.release_delta import delta_artifact, manifest_of, unchanged
from deploylib.remote.layout import Layout
from deploylib.remote.reading import STATE_MARK, parse_state, state_script
from tests.conftest import Project

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(delta=True),
    switch(),
    verify(command("test -f {current_path}/REVISION"), attempts=1, wait=0),
)
"""

#: names a shell or a list could trip over
HOSTILE = ["new\nline.txt", "back\\slash.txt", "it's $(id) `x`.txt", "space d/ir/f.txt", "-dash"]


def make_app(app: Path) -> None:
    for index in range(60):
        folder = app / "static" / f"d{index % 6}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.bin").write_bytes(os.urandom(2000) + bytes([index]))
    for name in HOSTILE:
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")
    (app / "run.sh").write_text("#!/bin/sh\necho run\n")
    (app / "run.sh").chmod(0o755)
    (app / "private.txt").write_text("private\n")
    (app / "private.txt").chmod(0o600)
    (app / "empty-dir").mkdir()
    (app / "link-to-run").symlink_to("run.sh")


def tree(root: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, tuple[str, int, bytes]]:
    """Every path under ``root`` (but ``skip`` at the top): its type, mode and content (a
    link's target)."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            relative = str(path.relative_to(root))
            if relative.split("/")[0] in skip:
                continue
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                found[relative] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = ("dir", mode, b"")
            else:
                found[relative] = ("file", mode, path.read_bytes())
    return found


def full_unpack(project: Project, into: Path) -> dict[str, tuple[str, int, bytes]]:
    """The tree a full unpack of the app's artifact makes."""
    artifact = into / "artifact.tar.gz"
    into.mkdir()
    subprocess.run(["tar", "-czf", str(artifact), "-C", str(project.root / "app"), "."], check=True)
    unpacked = into / "tree"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(artifact), "-C", str(unpacked)], check=True)
    return tree(unpacked)


def release_tree(project: Project, release: str) -> dict[str, tuple[str, int, bytes]]:
    # what deploylib adds to a release, besides the artifact's tree
    return tree(project.target / "releases" / release, skip=frozenset({"REVISION", ".env", "log"}))


def deploy(project: Project, revision: str) -> str:
    result = project.cli("deploy", "--env", "dev", "--revision", revision)
    assert result.returncode == 0, result.stdout + result.stderr
    current = project.current()
    assert current is not None
    return current


def test_a_delta_release_is_the_artifact_s_tree_and_leaves_the_live_one_alone(
    project: Project, tmp_path: Path
) -> None:
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    first = deploy(project, "aaa1111")
    manifest = project.target / ".deploylib" / "manifests" / first
    assert manifest.is_file()  # kept for the next deploy's delta
    before = release_tree(project, first)

    # the next revision: one file changed, one mode changed, one removed, one added, a file
    # become a link and a hostile name changed
    (app / "static/d1/f1.bin").write_bytes(b"changed\n")
    (app / "run.sh").chmod(0o700)
    (app / "static/d2/f2.bin").unlink()
    (app / "static/d3/new.bin").write_bytes(b"new\n")
    (app / "static/d4/f4.bin").unlink()
    (app / "static/d4/f4.bin").symlink_to("../d0/f0.bin")
    (app / HOSTILE[3]).write_text("changed\n")
    second = deploy(project, "bbb2222")

    new_root = project.target / "releases" / second
    old_root = project.target / "releases" / first
    assert release_tree(project, second) == full_unpack(project, tmp_path / "full")
    # unchanged files are the live release's, hard-linked; changed ones are files of their own
    assert (new_root / "static/d0/f0.bin").stat().st_ino == (
        old_root / "static/d0/f0.bin"
    ).stat().st_ino
    for name in (HOSTILE[0], HOSTILE[1], HOSTILE[2], HOSTILE[4]):
        assert (new_root / name).stat().st_ino == (old_root / name).stat().st_ino, name
    for changed in ("static/d1/f1.bin", "run.sh", HOSTILE[3]):
        assert (new_root / changed).stat().st_ino != (old_root / changed).stat().st_ino, changed
    # the live release, now the previous one, is as it was: nothing was written through a link
    assert release_tree(project, first) == before
    assert not list((project.target / ".deploylib" / "uploads").iterdir())


def test_a_live_release_changed_since_sends_the_whole_artifact(
    project: Project, tmp_path: Path
) -> None:
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    first = deploy(project, "aaa1111")
    # a file of the live release edited in place, and one replaced by a link to elsewhere
    edited = project.target / "releases" / first / "static/d0/f0.bin"
    edited.write_bytes(b"edited on the server\n")
    swapped = project.target / "releases" / first / "static/d5"
    os.rename(swapped, project.target / "elsewhere")
    swapped.symlink_to(project.target / "elsewhere")
    (app / "static/d1/f1.bin").write_bytes(b"changed\n")

    result = project.cli("deploy", "--env", "dev", "--revision", "bbb2222")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "sending the whole artifact" in result.stdout
    second = project.current()
    assert second is not None and second != first
    assert release_tree(project, second) == full_unpack(project, tmp_path / "full")
    new_root = project.target / "releases" / second
    assert (new_root / "static/d0/f0.bin").stat().st_ino != edited.stat().st_ino
    assert edited.read_bytes() == b"edited on the server\n"  # the server's edit is left as it is


def test_what_the_smaller_artifact_holds(tmp_path: Path) -> None:
    """Everything but the files the target takes from its live release: directories, links,
    changed files, with their modes and owners."""
    artifact = tmp_path / "a.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        for name, data, mode in (("./same", b"same", 0o644), ("./changed", b"new", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("./dir")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o750
        tar.addfile(folder)
    manifest = manifest_of(artifact)
    assert manifest is not None
    previous = manifest.text.replace(manifest.entries["changed"].sha256, "0" * 64)
    linked = unchanged(manifest, previous)
    assert linked == ["same"]
    with tarfile.open(delta_artifact(artifact, linked), "r:gz") as delta:
        members = {m.name: m for m in delta}
    assert set(members) == {"./changed", "./dir"}
    assert members["./dir"].mode == 0o750


def test_an_artifact_a_delta_cannot_carry_has_no_manifest(tmp_path: Path) -> None:
    artifact = tmp_path / "a.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        info = tarfile.TarInfo("file")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("hard")
        link.type, link.linkname = tarfile.LNKTYPE, "file"
        tar.addfile(link)
    assert manifest_of(artifact) is None


def test_a_manifest_read_with_the_state_cannot_pass_for_its_sections(tmp_path: Path) -> None:
    """A damaged manifest holding a section's mark line leaves the release log as it is."""
    layout = Layout(str(tmp_path))
    release = "20260101T000000Z-abc1234"
    (tmp_path / "releases" / release).mkdir(parents=True)
    (tmp_path / "current").symlink_to(f"releases/{release}")
    entry = '{"event": "deploy", "outcome": "success", "release": "%s", "current": "%s"}'
    (tmp_path / ".deploylib").mkdir()
    (tmp_path / ".deploylib" / "releases.jsonl").write_text(entry % (release, release) + "\n")
    text = f'["a", "{"0" * 64}", 420, 0, 0]\n{STATE_MARK}log\n{STATE_MARK}end\n'
    (tmp_path / ".deploylib" / "manifests").mkdir()
    (tmp_path / ".deploylib" / "manifests" / release).write_text(text)
    output = LocalBackend().run(Command(state_script(layout, manifest=True))).stdout
    state = parse_state(output, layout)
    assert [e["release"] for e in state.log] == [release]
    assert state.manifest == text.rstrip("\n")
