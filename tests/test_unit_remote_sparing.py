"""Specifies deploylib.remote.sparing in the shells a login may have: each line leaves what the
plain command leaves (paths made or gone, a failure when it cannot be done), and starts no
process when there is nothing to do (checked with an empty PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploylib.remote import sparing

SHELLS = [s for s in ("sh", "bash", "dash") if shutil.which(s)]
NAME = "it's a $(name) with spaces"


def run(shell: str, line: str, *, no_path: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/nonexistent"} if no_path else None
    shell_path = shutil.which(shell)
    assert shell_path is not None
    return subprocess.run(
        [shell_path, "-c", line], capture_output=True, text=True, env=env, timeout=10
    )


def make(kind: str, path: Path) -> None:
    """Put a ``kind`` of thing at ``path``."""
    if kind == "file":
        path.write_text("x")
    elif kind == "empty dir":
        path.mkdir()
    elif kind == "full dir":
        path.mkdir()
        (path / ".hidden").write_text("x")
        (path / "sub").mkdir()
    elif kind == "link to a dir":
        target = path.parent / "elsewhere"
        target.mkdir()
        (target / "kept").write_text("x")
        path.symlink_to(target)
    elif kind == "dangling link":
        path.symlink_to(path.parent / "nowhere")


KINDS = ["nothing", "file", "empty dir", "full dir", "link to a dir", "dangling link"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tree", [False, True])
def test_remove_leaves_nothing_and_no_process_when_nothing_is_there(
    tmp_path: Path, shell: str, kind: str, tree: bool
) -> None:
    path = tmp_path / NAME
    make(kind, path)
    plain_fails = kind in ("empty dir", "full dir") and not tree  # rm -f of a directory
    result = run(shell, sparing.remove(str(path), tree=tree), no_path=kind == "nothing")
    if plain_fails:
        assert result.returncode != 0 and path.is_dir()
        return
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(path)
    if kind == "link to a dir":
        assert (tmp_path / "elsewhere" / "kept").exists()  # nothing removed through the link


@pytest.mark.parametrize("shell", SHELLS)
def test_make_dirs_makes_what_is_missing_and_fails_like_mkdir(tmp_path: Path, shell: str) -> None:
    a, b = tmp_path / NAME / "deep", tmp_path / "b"
    b.mkdir()
    assert run(shell, sparing.make_dirs(str(a), str(b))).returncode == 0
    assert a.is_dir() and b.is_dir()
    # all there: no process at all
    assert run(shell, sparing.make_dirs(str(a), str(b)), no_path=True).returncode == 0
    link = tmp_path / "link"
    link.symlink_to(b)
    assert run(shell, sparing.make_dirs(str(link)), no_path=True).returncode == 0
    blocked = tmp_path / "file"
    blocked.write_text("x")
    failed = run(shell, sparing.make_dirs(str(a), str(blocked / "under")))
    assert failed.returncode != 0 and not (blocked / "under").exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", KINDS)
def test_empty_dir_leaves_an_empty_directory(tmp_path: Path, shell: str, kind: str) -> None:
    path = tmp_path / NAME
    make(kind, path)
    result = run(shell, sparing.empty_dir(str(path)), no_path=kind == "empty dir")
    assert result.returncode == 0, result.stderr
    assert path.is_dir() and not path.is_symlink() and list(path.iterdir()) == []
    if kind == "link to a dir":
        assert (tmp_path / "elsewhere" / "kept").exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("helper", ["empty_dir", "remove", "make_dirs"])
def test_a_failing_command_fails_the_line(tmp_path: Path, shell: str, helper: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("rm", "mkdir"):  # each exits 3, as on a read-only disk
        (bin_dir / tool).write_text("#!/bin/sh\nexit 3\n")
        (bin_dir / tool).chmod(0o755)
    path = tmp_path / NAME
    make("full dir", path)
    line = {
        "empty_dir": sparing.empty_dir(str(path)),
        "remove": sparing.remove(str(path), tree=True),
        "make_dirs": sparing.make_dirs(str(tmp_path / "new")),
    }[helper]
    shell_path = shutil.which(shell)
    assert shell_path is not None
    result = subprocess.run(
        [shell_path, "-c", line + "; s=$?; echo after; exit $s"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        timeout=10,
    )
    assert result.returncode == 3 and result.stdout == "after\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_empty_dir_with_globbing_off_still_empties(tmp_path: Path, shell: str) -> None:
    """``set -f`` in a login's start-up: nothing can be seen in the directory, so it is removed
    and made again (what a cut-off push left there may hold an env file)."""
    path = tmp_path / NAME
    make("full dir", path)
    result = run(shell, "set -f; " + sparing.empty_dir(str(path)))
    assert result.returncode == 0, result.stderr
    assert path.is_dir() and list(path.iterdir()) == []


#: what a login's start-up may have set, and the line that says it is still set
OPTIONS = {
    "": "",
    "set -f": "case $- in *f*) echo STILL;; esac",
    "shopt -s failglob": "shopt -q failglob && echo STILL",
}


def shells_for(option: str) -> list[str]:
    return ["bash"] if option.startswith("shopt") else SHELLS


@pytest.mark.parametrize(
    ("shell", "option"), [(sh, opt) for opt in OPTIONS for sh in shells_for(opt)]
)
@pytest.mark.parametrize("passes", [False, True])
@pytest.mark.parametrize("files", [0, 1])
def test_globbing_sees_files_and_puts_the_options_back(
    tmp_path: Path, shell: str, option: str, passes: bool, files: int
) -> None:
    """Under `set -f` a ``*`` sees the files; under bash's `failglob` one that matches nothing
    does not stop the script; either is set again afterwards."""
    if files:
        (tmp_path / "a file").write_text("x")
    body = f"for f in '{tmp_path}'/*; do echo \"[$f]\"; done; {'true' if passes else 'false'}"
    line = (
        f"{option + '; ' if option else ''}"
        f"if {sparing.globbing(body)}; then echo PASSED; fi; {OPTIONS[option]}"
    )
    result = run(shell, line)
    seen = f"[{tmp_path}/a file]" if files else f"[{tmp_path}/*]"
    expected = [seen, *(["PASSED"] if passes else []), *(["STILL"] if option else [])]
    assert result.stdout.splitlines() == expected, result.stderr


@pytest.mark.parametrize("kind", ["nothing", "empty dir", "full dir"])
def test_empty_dir_under_failglob(tmp_path: Path, kind: str) -> None:
    path = tmp_path / NAME
    make(kind, path)
    result = run("bash", f"shopt -s failglob; {sparing.empty_dir(str(path))}; echo DONE")
    assert result.returncode == 0 and result.stdout == "DONE\n", result.stderr
    assert path.is_dir() and not any(path.iterdir())
