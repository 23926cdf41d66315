"""A switch and its restart run as one command (one channel), by a real shell: the result says
whether ``current`` moved, whatever the restart did, and the restart's variables reach only the
restart."""

from __future__ import annotations

import os
from pathlib import Path

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, took_mark
from deploylib.remote.layout import Layout
from deploylib.remote.release import moved_mark, switch_command, switch_then
from deploylib.secrets import Secret

OLD, NEW = "20260101T000000Z-0ld0000", "20260102T000000Z-new0000"


def releases(tmp_path: Path, *, complete: bool = True) -> Layout:
    layout = Layout(str(tmp_path))
    for release in (OLD, NEW):
        Path(layout.release_path(release)).mkdir(parents=True)
    Path(layout.release_path(OLD), "REVISION").write_text(f"{OLD} 0ld\n")
    if complete:
        Path(layout.release_path(NEW), "REVISION").write_text(f"{NEW} new\n")
    os.symlink(f"releases/{OLD}", layout.current)
    return layout


def restart(layout: Layout, script: str) -> Command:
    """A restart as the switch step makes it: from ``current``, with the env files' variables
    (here a PATH that would break every tool the switch uses, and a secret)."""
    return Command(
        script,
        cwd=layout.current,
        env={"PATH": "/nonexistent", "TOKEN": Secret("s3cret 'q' $(x)")},
        description="restart",
    )


def run(layout: Layout, then: Command) -> tuple[bool, int, str]:
    command = switch_then(switch_command(layout, NEW), then, NEW)
    assert command.moved_mark == moved_mark(NEW)
    assert "s3cret" not in command.full_line  # the secret comes on stdin only
    result = LocalBackend(default_timeout=30).run(command)
    moved, result = took_mark(result, command.moved_mark)
    return moved, result.exit_code, result.stdout


def test_a_failed_restart_after_the_switch_says_current_moved(tmp_path: Path) -> None:
    layout = releases(tmp_path)
    moved, code, stdout = run(
        layout, restart(layout, 'printf "%s|%s\\n" "$TOKEN" "$(/bin/pwd)"; exit 3')
    )
    assert (moved, code) == (True, 3)
    assert os.readlink(layout.current) == f"releases/{NEW}"
    # the restart ran from the new current, with its variables; the mark is not its output
    assert stdout == f"s3cret 'q' $(x)|{layout.release_path(NEW)}\n"


def test_a_refused_switch_runs_no_restart(tmp_path: Path) -> None:
    layout = releases(tmp_path, complete=False)
    moved, code, _ = run(layout, restart(layout, "/bin/touch RESTARTED"))
    assert (moved, code) == (False, 1)
    assert os.readlink(layout.current) == f"releases/{OLD}"
    assert not any(tmp_path.rglob("RESTARTED"))


def test_a_passing_restart(tmp_path: Path) -> None:
    layout = releases(tmp_path)
    moved, code, stdout = run(layout, restart(layout, "echo started"))
    assert (moved, code, stdout) == (True, 0, "started\n")
