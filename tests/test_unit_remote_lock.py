"""Specifies the lock guard and the unlock of deploylib.remote.lock in the shells a login may
have: a change runs only while owner.json names this deploy; the unlock removes only this
deploy's lock. Whose lock it is is read with shell built-ins, no process (the guard runs before
every change)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploylib.remote.layout import Layout
from deploylib.remote.lock import LOCK_LOST_EXIT, lock_guard, unlock_command

TOKEN = "ab" * 8
OTHER = "cd" * 8
SHELLS = [s for s in ("sh", "bash", "dash") if shutil.which(s)]

OWNERS = {
    "ours": json.dumps({"token": TOKEN, "user": "me"}) + "\n",
    "ours, no newline": json.dumps({"token": TOKEN}),
    "another deploy's": json.dumps({"token": OTHER}) + "\n",
    "empty": "",
    "ours on a later line": "{\n" + json.dumps({"token": TOKEN}) + "\n",
}


def owner_file(tmp_path: Path, content: str | None) -> Layout:
    layout = Layout(str(tmp_path / "app dir"))
    lock = Path(layout.lock)
    lock.mkdir(parents=True)
    if content is not None:
        (lock / "owner.json").write_text(content)
    return layout


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("owner", [*OWNERS, "missing"])
def test_a_guarded_change_runs_only_under_this_deploys_lock(
    tmp_path: Path, shell: str, owner: str
) -> None:
    layout = owner_file(tmp_path, OWNERS.get(owner))
    marker = tmp_path / "changed"
    line = f"{lock_guard(layout, TOKEN)}; touch '{marker}'; echo \"[$__dl_owner]\""

    result = subprocess.run([shell, "-c", line], capture_output=True, text=True, timeout=10)

    if owner.startswith("ours") and owner != "ours on a later line":
        assert result.returncode == 0, result.stderr
        assert marker.exists()
        assert result.stdout == "[]\n"  # the guard's variable is gone before the change runs
    else:
        # a later line is not read: refusing is the safe side (deploylib writes one line)
        assert result.returncode == LOCK_LOST_EXIT
        assert "no longer this deploy's" in result.stderr
        assert not marker.exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("owner", ["ours", "another deploy's", "missing"])
def test_the_unlock_removes_only_this_deploys_lock(tmp_path: Path, shell: str, owner: str) -> None:
    layout = owner_file(tmp_path, OWNERS.get(owner))
    stage = Path(layout.lock_stage(TOKEN))
    stage.mkdir()  # what a lock command cut off may leave

    result = subprocess.run(
        [shell, "-c", unlock_command(layout, TOKEN).line], capture_output=True, text=True
    )

    assert not stage.exists()
    if owner == "ours":
        assert result.returncode == 0, result.stderr
        assert not Path(layout.lock).exists()
    else:  # another deploy's, or one whose owner cannot be read: left alone, and said
        assert result.returncode == 1 and "held by another deploy" in result.stderr
        assert Path(layout.lock).exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_shell_with_set_e_is_refused_as_lost_too(tmp_path: Path, shell: str) -> None:
    """A login whose start-up sets ``set -e`` (BASH_ENV, a .bashrc): still exit 76, said."""
    layout = owner_file(tmp_path, None)
    result = subprocess.run(
        [shell, "-ec", f"{lock_guard(layout, TOKEN)}; echo ran"], capture_output=True, text=True
    )
    assert result.returncode == LOCK_LOST_EXIT and result.stdout == ""
    assert "no longer this deploy's" in result.stderr
