"""Specifies deploylib.sudo: commands run as another user through ``sudo -n``, their variables
on stdin (never a command line), and what a missing sudoers rule says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploylib import Command, Pipeline, Secret, build, push, run, switch
from deploylib.backends.local import LocalBackend
from deploylib.errors import ConfigError
from deploylib.stdin_env import ENV_PRELUDE
from deploylib.sudo import as_user
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

INNER = ENV_PRELUDE + "cd /srv/app && ./manage.py check"
SCRIPT = (
    "if [ \"$(id -un)\" = www-data ]; then sh -c '{inner}'; else "
    "sudo -n -u www-data -- sh -c '{inner}' || {{ __dls=$?; "
    "sudo -n -l -u www-data sh -c : >/dev/null 2>&1 || {{ echo 'deploylib: sudo -n could not "
    "run this as www-data without a password (deploylib never waits for one). Allow it with a "
    "NOPASSWD rule, e.g. in /etc/sudoers.d/deploylib (edit with visudo -f "
    '/etc/sudoers.d/deploylib):\' >&2; echo "  $(id -un) ALL=(www-data) NOPASSWD: ALL" >&2; '
    "}}; exit $__dls; }}; fi"
)


def test_the_command_text_and_the_variables_on_stdin() -> None:
    command = Command(
        "./manage.py check",
        cwd="/srv/app",
        env={"TOKEN": Secret("s3cr3t"), "MODE": "prod"},
        guard="guard",
    )
    wrapped = as_user(command, "www-data")
    inner = INNER.replace("'", "'\"'\"'")
    assert wrapped.script == SCRIPT.format(inner=inner)
    assert wrapped.full_line == "guard; " + wrapped.line  # the lock's guard: the login user's
    assert wrapped.env == {} and wrapped.cwd is None
    assert isinstance(wrapped.stdin, Secret)  # a secret among them: the stdin prints as ***
    assert wrapped.stdin_bytes() == b"export TOKEN=s3cr3t\nexport MODE=prod\n\n"
    assert "s3cr3t" not in wrapped.full_line


def test_run_sudo_true_is_root_or_the_environments_become_user() -> None:
    pipeline = Pipeline(
        build("true"),
        push(),
        run("id", sudo=True),
        run("whoami", sudo="postgres"),
        switch(restart="systemctl restart app", sudo="root"),
    )
    for become, first in ((None, "root"), ("app", "app")):
        fleet = FakeFleet()
        env = environment(become=become)
        deploy_with_fakes(env, pipeline, fleet)
        commands = [c for c in fleet["local"].commands if c.description in ("run", "restart")]
        assert [c.script.split('" = ')[1].split(" ")[0] for c in commands] == [
            first,
            "postgres",
            "root",
        ]
        assert all("sudo -n -u" in c.script for c in commands)


def test_a_user_name_is_checked_when_the_pipeline_is_written() -> None:
    with pytest.raises(ConfigError, match="sudo is True, False or a user name"):
        run("id", sudo="root; rm -rf /")


def test_become_in_deploy_toml(tmp_path: Path) -> None:
    from deploylib.config import load_environment

    (tmp_path / "deploy.toml").write_text(
        'app = "a"\ndeploy_to = "/srv/a"\n[environments.prod]\nhosts = ["local"]\n'
        'become = "www-data"\n'
    )
    assert load_environment(tmp_path / "deploy.toml", "prod").become == "www-data"
    (tmp_path / "deploy.toml").write_text(
        'app = "a"\ndeploy_to = "/srv/a"\nbecome = "bad user"\n'
        '[environments.prod]\nhosts = ["local"]\n'
    )
    with pytest.raises(ConfigError, match="become"):
        load_environment(tmp_path / "deploy.toml", "prod")


needs_root_and_sudo = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("sudo") is None,
    reason="needs root and sudo (apt-get install sudo) to become another user without a password",
)


@needs_root_and_sudo
def test_as_nobody_the_secret_reaches_the_command_but_no_command_line(tmp_path: Path) -> None:
    # the value is looked for with a pattern from a file: on grep's command line it would be
    # found there
    probe = (
        'id -un; printf "%s\\n" "$TOKEN"; p=$(mktemp); printf "%s" "$TOKEN" > "$p"; '
        'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done '
        '| grep -c -F -f "$p" || true; rm -f "$p"'
    )
    command = Command(probe, cwd="/", env={"TOKEN": Secret("s3cr3t-value")})
    result = LocalBackend().run(as_user(command, "nobody"))
    assert result.ok, result.stderr
    # the user, the variable's value, and no process showing it on its command line
    assert result.stdout.split() == ["nobody", "s3cr3t-value", "0"]
    # the same look finds a value that is on a command line
    control = LocalBackend().run(
        as_user(
            Command(": s3cr3t-value; " + probe, env={"TOKEN": Secret("s3cr3t-value")}), "nobody"
        )
    )
    assert int(control.stdout.split()[-1]) > 0


@needs_root_and_sudo
def test_a_missing_sudoers_rule_fails_at_once_and_says_which_rule(tmp_path: Path) -> None:
    # nobody has no sudo rule: sudo -n refuses instead of asking for a password
    wrapped = as_user(Command("id -un", env={"X": "1"}), "root")
    result = subprocess.run(
        ["sudo", "-u", "nobody", "sh", "-c", wrapped.full_line],
        input=wrapped.stdin_bytes(),
        capture_output=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "sudo -n could not run this as root without a password" in stderr
    assert "nobody ALL=(root) NOPASSWD: ALL" in stderr
    assert "/etc/sudoers.d/deploylib" in stderr


def test_the_login_user_itself_needs_no_sudo() -> None:
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    wrapped = as_user(Command('printf "%s" "$X"', env={"X": "a b\nc"}), me)
    result = LocalBackend().run(wrapped)
    assert result.ok and result.stdout == "a b\nc", result
