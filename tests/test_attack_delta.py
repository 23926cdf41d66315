"""Attacks on delta releases (push(delta=True)) with a real shell and GNU tools."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command
from deploylib.remote.layout import Layout
from deploylib.remote.reading import parse_state, state_script
from tests.conftest import Project
from tests.test_delta_releases import PIPELINE, deploy, full_unpack, make_app, release_tree


def owners(
    root: Path, *, skip: frozenset[str] = frozenset({"REVISION", ".env", "log"})
) -> dict[str, tuple[int, int]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel.split("/")[0] in skip:
                continue
            info = path.lstat()
            found[rel] = (info.st_uid, info.st_gid)
    return found


def test_mode_changed_in_place_on_the_live_release_sends_the_whole_artifact(
    project: Project, tmp_path: Path
) -> None:
    """A file of the live release chmod-ed on the server (content unchanged): its sha256
    still matches, but its mode is not the one its release was made with, so it is not
    linked (the shared inode would carry the server's mode): the release is what a full
    unpack makes."""
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    first = deploy(project, "aaa1111")
    live = project.target / "releases" / first / "static/d0/f0.bin"
    os.chmod(live, 0o777)  # edited in place on the server: mode only
    (app / "static/d1/f1.bin").write_bytes(b"changed\n")
    result = project.cli("deploy", "--env", "dev", "--revision", "bbb2222")
    assert result.returncode == 0, result.stdout + result.stderr
    second = project.current()
    assert second is not None
    assert second != first
    new = release_tree(project, second)
    full = full_unpack(project, tmp_path / "full")
    assert new["static/d0/f0.bin"] == full["static/d0/f0.bin"]


def test_owner_changed_in_place_on_the_live_release_sends_the_whole_artifact(
    project: Project, tmp_path: Path
) -> None:
    """As root tar keeps the artifact's owners; a file chown-ed on the server in the live
    release is not linked: the new release has the artifact's owner."""
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    first = deploy(project, "aaa1111")
    live = project.target / "releases" / first / "static/d0/f0.bin"
    os.chown(live, 4242, 4242)
    (app / "static/d1/f1.bin").write_bytes(b"changed\n")
    second = deploy(project, "bbb2222")
    # what a full unpack gives (as root: the artifact's owners)
    full_dir = tmp_path / "full"
    full_unpack(project, full_dir)
    expected = owners(full_dir / "tree")
    got = owners(project.target / "releases" / second)
    assert got["static/d0/f0.bin"] == expected["static/d0/f0.bin"]


HOSTILE_NAMES = [
    b"nonutf8-\xff\xfe.txt",
    b"cr\rin.txt",
    b" leading space",
    b"*star",
    b"--dash-dash",
    b"tab\there",
    b"L" * 250,
    b"deep/" * 20 + b"x.txt",
    b"back\\nslash-n",
]


def _make_hostile(app: Path, tag: bytes) -> None:
    root = bytes(app)
    for name in HOSTILE_NAMES:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(name + b"\n")
    # one hostile name changed in each revision, so it rides in the delta
    with open(os.path.join(root, b"nonutf8-changed-\xff.txt"), "wb") as f:
        f.write(tag)


def test_hostile_file_names(project: Project, tmp_path: Path) -> None:
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    app.mkdir(exist_ok=True)
    (app / "keep.txt").write_text("k\n")
    _make_hostile(app, b"one")
    first = deploy(project, "aaa1111")
    _make_hostile(app, b"two")
    result = project.cli("deploy", "--env", "dev", "--revision", "bbb2222")
    assert result.returncode == 0, result.stdout + result.stderr
    second = project.current()
    assert second is not None
    assert release_tree(project, second) == full_unpack(project, tmp_path / "full")
    # delta used (not a fallback): an unchanged hostile file is the live one
    new_root = project.target / "releases" / second
    old_root = project.target / "releases" / first
    assert "sending the whole artifact" not in result.stdout, result.stdout
    for name in HOSTILE_NAMES:
        a = os.stat(os.path.join(bytes(new_root), name)).st_ino
        b = os.stat(os.path.join(bytes(old_root), name)).st_ino
        # a name with a carriage return is always sent: sha256sum -c would misread its line
        assert (a == b) == (b"\r" not in name), name


def test_types_swap_between_releases(project: Project, tmp_path: Path) -> None:
    """Files become directories, directories become files, a dir becomes a symlink."""
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    (app / "a").write_text("a file\n")
    (app / "b").mkdir()
    (app / "b" / "inner").write_text("inner\n")
    (app / "c").mkdir()
    (app / "c" / "x").write_text("x\n")
    (app / "same").write_text("same\n")
    first = deploy(project, "aaa1111")
    (app / "a").unlink()
    (app / "a").mkdir()
    (app / "a" / "inner").write_text("a file\n")
    shutil.rmtree(app / "b")
    (app / "b").write_text("inner\n")
    shutil.rmtree(app / "c")
    (app / "real").mkdir()
    (app / "real" / "x").write_text("x\n")
    (app / "c").symlink_to("real")
    second = deploy(project, "bbb2222")
    assert second != first
    assert release_tree(project, second) == full_unpack(project, tmp_path / "full")


def test_a_manifest_with_carriage_returns_forges_no_state_section(tmp_path: Path) -> None:
    """A damaged manifest (a garbage line holding a \\r, or any other str.splitlines break
    such as \\x1c, \\x85) cannot pass for a section mark: parse_state splits on '\\n'
    only, and each manifest line is behind a '|'."""
    layout = Layout(str(tmp_path))
    release = "20260101T000000Z-abc1234"
    (tmp_path / "releases" / release).mkdir(parents=True)
    (tmp_path / "releases" / release / "REVISION").write_text(f"{release} abc1234\n")
    (tmp_path / "current").symlink_to(f"releases/{release}")
    entry = '{"event": "deploy", "outcome": "success", "release": "%s", "current": "%s"}'
    (tmp_path / ".deploylib").mkdir()
    (tmp_path / ".deploylib" / "releases.jsonl").write_text(entry % (release, release) + "\n")
    garbage = (
        "garbage\r@@deploylib:current\rabsent"
        '\r@@deploylib:lock\rlocked\rage=1\r{"token": "forged", "user": "mallory"}'
        "\r@@deploylib:log\rlines=0\r"
    )
    (tmp_path / ".deploylib" / "manifests").mkdir()
    (tmp_path / ".deploylib" / "manifests" / release).write_text(garbage + "\n")
    output = LocalBackend().run(Command(state_script(layout, manifest=True))).stdout
    state = parse_state(output, layout)
    assert state.current == release
    assert not state.locked
    assert [e["release"] for e in state.log] == [release]


def test_a_name_ending_in_a_carriage_return_hides_no_in_place_edit(
    project: Project, tmp_path: Path
) -> None:
    """sha256sum -c takes a trailing \\r of a line as a CRLF ending (the line for "x\\r"
    would check "x"): a name with a carriage return is never linked, so an in-place edit of
    the live "x\\r" cannot reach the new release."""
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    app.mkdir(exist_ok=True)
    (app / "x").write_bytes(b"same bytes\n")
    (app / "x\r").write_bytes(b"same bytes\n")
    (app / "other").write_text("1\n")
    first = deploy(project, "aaa1111")
    edited = project.target / "releases" / first / "x\r"
    edited.write_bytes(b"EDITED ON THE SERVER\n")  # in place (same inode)
    (app / "other").write_text("2\n")
    second = deploy(project, "bbb2222")
    assert second != first
    full = full_unpack(project, tmp_path / "full")
    got = release_tree(project, second)
    assert got["x\r"] == full["x\r"]


def test_manifest_with_invalid_utf8_garbage(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    release = "20260101T000000Z-abc1234"
    (tmp_path / "releases" / release).mkdir(parents=True)
    (tmp_path / "current").symlink_to(f"releases/{release}")
    (tmp_path / ".deploylib" / "manifests").mkdir(parents=True)
    (tmp_path / ".deploylib" / "manifests" / release).write_bytes(
        b"\xff\xfe\x00garbage\n" + os.urandom(4000) + b"\n"
    )
    output = LocalBackend().run(Command(state_script(layout, manifest=True))).stdout
    state = parse_state(output, layout)
    assert state.current == release


def test_a_manifest_meant_to_forge_the_state_end_to_end(project: Project) -> None:
    """The same through a real deploy: a live release's manifest holding \\r-separated
    marks leaves the next deploy's state as it is (its previous release, its log)."""
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    first = deploy(project, "aaa1111")
    manifest = project.target / ".deploylib" / "manifests" / first
    manifest.write_text(
        manifest.read_text()
        + "junk\r@@deploylib:current\rabsent\r@@deploylib:releases\r@@deploylib:log\rlines=0\n"
    )
    (app / "static/d1/f1.bin").write_bytes(b"changed\n")
    result = project.cli("deploy", "--env", "dev", "--revision", "bbb2222")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out

    assert project.log()[-1]["previous"] == first, project.log()[-1]
    # the deploy saw the live release (and took files from it: a delta, not a full send)
    second = project.current()
    assert second is not None
    new_root = project.target / "releases" / second
    old_root = project.target / "releases" / first
    assert (new_root / "static/d0/f0.bin").stat().st_ino == (
        old_root / "static/d0/f0.bin"
    ).stat().st_ino, out


def test_same_content_other_owner_in_the_artifact(project: Project, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    project.write("pipelines/web.py", PIPELINE)
    app = project.root / "app"
    make_app(app)
    os.chown(app / "static/d0/f0.bin", 1000, 1000)
    first = deploy(project, "aaa1111")
    os.chown(app / "static/d0/f0.bin", 2000, 2000)
    os.chmod(app / "static/d2/f2.bin", 0o600)  # and a mode-only change
    second = deploy(project, "bbb2222")
    assert second != first
    full_dir = tmp_path / "full"
    full = full_unpack(project, full_dir)
    assert release_tree(project, second) == full
    assert owners(project.target / "releases" / second) == owners(full_dir / "tree")
    assert owners(project.target / "releases" / first)["static/d0/f0.bin"] == (1000, 1000)
