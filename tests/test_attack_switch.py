"""Attacks on a switch and its restart in one command (release.switch_then)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Result, took_mark
from deploylib.remote.layout import Layout
from deploylib.remote.release import moved_mark, switch_command, switch_then
from deploylib.secrets import Secret
from deploylib.stdin_env import env_block
from deploylib.sudo import as_user
from tests.conftest import Project
from tests.test_switch_restart import NEW, releases


def _run(layout: Layout, then: Command) -> tuple[bool, Result]:
    command = switch_then(switch_command(layout, NEW), then, NEW)
    result = LocalBackend(default_timeout=30).run(command)
    moved, result = took_mark(result, command.moved_mark)
    return moved, result


@pytest.mark.parametrize("name", ["__dl", "__dlv", "__dl_more"])
def test_a_variable_named_like_the_prelude_s_own_is_refused(name: str, project: Project) -> None:
    """``ENV_PRELUDE`` reads each line into ``$__dl`` (and a multi-line value through
    ``$__dlv``): a variable of such a name would be overwritten on its way. It is refused in
    the env file, before any host is touched (exit 2), and by the prelude itself."""
    with pytest.raises(ValueError, match="deploylib's own"):
        env_block({name: "value"})
    project.write(".env", f"{name}=value\n")
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "__dl" in result.stderr + result.stdout
    assert project.current() is None


HOSTILE_ENV: dict[str, str | Secret] = {
    "PATH": "/nonexistent",
    "IFS": "/ \n-x",
    "ENV": "/tmp/evil-env",
    "CDPATH": "/",
    "PS4": "$(touch /tmp/pwned-ps4)",
    "LC_ALL": "xx_XX.BAD",
    "HOME": "/nonexistent",
    "SECRET": Secret("s3c 'q' $(x)\nline2"),
}


def test_hostile_variable_names_leave_the_switch_alone(tmp_path: Path) -> None:
    Path("/tmp/evil-env").write_text("echo EVIL-ENV-RAN\n")
    layout = releases(tmp_path)
    script = 'printf "%s|%s|%s\\n" "$PATH" "$IFS" "$SECRET"; exit 5'
    moved, result = _run(layout, Command(script, cwd=layout.current, env=HOSTILE_ENV))
    assert moved and result.exit_code == 5, result
    assert os.readlink(layout.current) == f"releases/{NEW}"
    assert result.stdout == "/nonexistent|/ \n-x|s3c 'q' $(x)\nline2\n"
    assert "EVIL" not in result.stdout + result.stderr
    assert not Path("/tmp/pwned-ps4").exists()


def test_a_restart_printing_the_mark_after_a_refused_switch(tmp_path: Path) -> None:
    layout = releases(tmp_path, complete=False)
    then = Command(f"printf '%s\\n' '{moved_mark(NEW)}'", cwd=layout.current)
    moved, result = _run(layout, then)
    assert not moved and result.exit_code == 1


def test_a_restart_reading_stdin_gets_only_its_own(tmp_path: Path) -> None:
    layout = releases(tmp_path)
    then = Command(
        "cat", cwd=layout.current, env={"PATH": "/usr/bin:/bin", "A": "1"}, stdin=b"own stdin\n"
    )
    moved, result = _run(layout, then)
    assert moved and result.stdout == "own stdin\n"


def test_a_sudo_restart(tmp_path: Path) -> None:
    """as_user: the login user already is the user (root here): sh -c with the prelude."""
    user = os.popen("id -un").read().strip()
    layout = releases(tmp_path)
    inner = Command(
        'printf "%s|%s\\n" "$SECRET" "$PATH"; /bin/cat; exit 4',
        cwd=layout.current,
        env={"PATH": "/nonexistent", "SECRET": Secret("a'b\nc")},
        stdin=b"in\n",
    )
    moved, result = _run(layout, as_user(inner, user))
    assert moved and result.exit_code == 4, result
    assert result.stdout == "a'b\nc|/nonexistent\nin\n"


def test_a_restart_killing_its_shell_still_says_moved(tmp_path: Path) -> None:
    layout = releases(tmp_path)
    moved, _result = _run(layout, Command("kill -9 $$", cwd=layout.current))
    assert moved


def test_a_restart_with_non_utf8_stdin_and_a_secret(tmp_path: Path) -> None:
    """The restart's stdin, no UTF-8, goes through as it is when a variable is a Secret."""
    layout = releases(tmp_path)
    then = Command("cat >/dev/null", cwd=layout.current, env={"S": Secret("x")}, stdin=b"\xff\xfe")
    moved, _result = _run(layout, then)
    assert moved


def test_a_real_sudo_restart_as_nobody(tmp_path: Path) -> None:
    import shutil
    import tempfile

    if os.geteuid() != 0 or shutil.which("sudo") is None:
        import pytest

        pytest.skip("needs root and sudo")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        layout = releases(base)
        for p in base.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        inner = Command(
            'printf "%s|%s|%s\\n" "$(/usr/bin/id -un)" "$SECRET" "$PATH"; /bin/cat; exit 6',
            cwd=layout.current,
            env={"PATH": "/nonexistent", "IFS": "x", "SECRET": Secret("a'b\nc $(id)")},
            stdin=b"in\n",
        )
        moved, result = _run(layout, as_user(inner, "nobody"))
        assert moved and result.exit_code == 6, result
        assert result.stdout == "nobody|a'b\nc $(id)|/nonexistent\nin\n"
        # a user sudo cannot run as: the switch still moved, and the runner knows
        moved, result = _run(layout, as_user(Command("true", cwd=layout.current), "nosuchuser"))
        assert moved and result.exit_code != 0
    finally:
        shutil.rmtree(base)


def test_a_restart_that_hangs_reading_stdin_times_out_but_says_moved(tmp_path: Path) -> None:
    from dataclasses import replace

    layout = releases(tmp_path)
    command = switch_then(switch_command(layout, NEW), Command("cat", cwd=layout.current), NEW)
    result = LocalBackend().run(replace(command, timeout=2))
    moved, result = took_mark(result, command.moved_mark)
    assert result.timed_out
    assert moved  # the mark came before the restart
