"""The systemd recipe: the unit deploylib writes passes ``systemd-analyze verify``; the restart
installs it and restarts the service (directly as root, through ``sudo -n`` otherwise, failing at
once with the sudoers rule it needs). No systemd runs here: ``systemctl`` is a recorder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploylib import Pipeline, build, placeholders, push
from deploylib.recipes import gunicorn_command, systemd, systemd_restart
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

SYSTEMCTL = '#!/bin/sh\necho "systemctl $*" >> "$(dirname "$0")/calls"\n[ "$1" != is-enabled ]\n'


@pytest.fixture
def target() -> Iterator[Path]:
    """A deploy_to with a release whose venv has a python; readable by everyone (nobody runs
    the script in one test), and a bin/ with a recording systemctl."""
    root = Path(tempfile.mkdtemp(prefix="deploylib-systemd-", dir="/tmp"))
    try:
        (root / "releases" / "r1" / ".venv" / "bin").mkdir(parents=True)
        (root / "releases" / "r1" / ".venv" / "bin" / "python").symlink_to(sys.executable)
        (root / "current").symlink_to("releases/r1")
        (root / "shared").mkdir()
        (root / "units").mkdir()
        (root / "bin").mkdir()
        (root / "bin" / "systemctl").write_text(SYSTEMCTL)
        (root / "bin" / "systemctl").chmod(0o755)
        for path in (root, *root.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o777 if path.is_dir() else path.stat().st_mode | 0o755)
        yield root
    finally:
        shutil.rmtree(root)


def script(root: Path, **options: Any) -> str:
    template = systemd_restart(
        "hello",
        exec_start=gunicorn_command("app:app", bind="127.0.0.1:8000", workers=2),
        unit_dir=str(root / "units"),
        **options,
    )
    values = {
        "current_path": f"{root}/current",
        "shared_path": f"{root}/shared",
        "deploy_to": str(root),
        "app": "hello",
        "env": "prod",
    }
    return placeholders.render_shell(template, values)


def run_script(root: Path, text: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "sh", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PATH": f"{root}/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the restart as root (no sudo needed)")
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_the_unit_verifies_and_is_installed_then_the_service_restarted(target: Path) -> None:
    result = run_script(target, script(target, type="notify", user="nobody"))
    assert result.returncode == 0, result.stderr
    unit = target / "units" / "hello.service"
    text = unit.read_text()
    assert f"ExecStart={target}/current/.venv/bin/python -m gunicorn --bind 127.0.0.1:8000" in text
    assert f"WorkingDirectory={target}/current\n" in text
    assert f"EnvironmentFile=-{target}/current/.env\n" in text
    assert "ExecReload=/bin/kill -s HUP $MAINPID\n" in text
    assert "User=nobody\nWorkingDirectory" in text and "Type=notify\n" in text
    assert "Description=hello (hello prod, deployed by deploylib)\n" in text
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (target / "bin" / "calls").read_text().splitlines() == [
        "systemctl daemon-reload",
        "systemctl is-enabled --quiet hello.service",
        "systemctl enable hello.service",
        "systemctl restart hello.service",
    ]
    # the same unit again: nothing to install or reload
    (target / "bin" / "calls").unlink()
    again = run_script(target, script(target, type="notify", user="nobody"))
    assert again.returncode == 0, again.stderr
    assert (target / "bin" / "calls").read_text().splitlines() == [
        "systemctl is-enabled --quiet hello.service",
        "systemctl enable hello.service",
        "systemctl restart hello.service",
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_systemd_analyze_refuses_a_broken_unit(target: Path) -> None:
    """The check above can fail: a unit with a bad setting does not verify."""
    (target / "units" / "bad.service").write_text(
        "[Service]\nType=bogus\nExecStart=relative/python\n"
    )
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(target / "units" / "bad.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode != 0


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("sudo") is None,
    reason="needs root and sudo, to run the restart as a user without a sudoers rule",
)
def test_without_a_sudoers_rule_the_restart_fails_at_once_naming_the_rule(target: Path) -> None:
    result = run_script(
        target, script(target), "sudo", "-u", "nobody", "env", f"PATH={target}/bin:/usr/bin:/bin"
    )
    assert result.returncode == 1
    assert "sudo -n may not run 'install -m 0644" in result.stderr
    assert "Allow it in /etc/sudoers.d/deploylib (edit with visudo -f" in result.stderr
    assert (
        f"  nobody ALL=(root) NOPASSWD: {target}/bin/systemctl daemon-reload, "
        f"{target}/bin/systemctl enable hello.service, {target}/bin/systemctl restart "
        f"hello.service, /usr/bin/install -m 0644 {target}/shared/systemd/hello.service "
        f"{target}/units/hello.service"
    ) in result.stderr
    assert not (target / "units" / "hello.service").exists()
    assert not (target / "bin" / "calls").exists()


EXPECTED_ROOT_COMMANDS = """\
as_root() {  # as_root COMMAND...: directly as root, else through sudo -n
  if [ "$(id -u)" -eq 0 ]; then "$@"; return; fi
  sudo -n "$@" && return
  __s=$?
  if ! sudo -n -l "$@" >/dev/null 2>&1; then"""

EXPECTED_TAIL = """\
mv -f "$rendered.tmp" "$rendered"
if ! cmp -s "$rendered" "$unit_dir/$service.service"; then
  as_root install -m 0644 "$rendered" "$unit_dir/$service.service" || exit
  as_root systemctl daemon-reload || exit
fi
systemctl is-enabled --quiet "$service.service" 2>/dev/null \\
  || as_root systemctl enable "$service.service" || exit
as_root systemctl reload-or-restart "$service.service"
}"""


def test_the_restart_command_on_a_target() -> None:
    fleet = FakeFleet()
    pipeline = Pipeline(
        build("true"),
        push(),
        systemd("hello", exec_start=gunicorn_command(), action="reload-or-restart"),
    )
    deploy_with_fakes(environment(app="hello", name="prod"), pipeline, fleet)
    [restart] = [c for c in fleet["local"].commands if c.description == "restart"]
    line = restart.line
    assert line.startswith(
        "cd /srv/app/current && {\n# systemd (deploylib.recipes): install the unit when it "
        "changed, then reload-or-restart hello\ndl_current=/srv/app/current "
        "dl_shared=/srv/app/shared dl_deploy_to=/srv/app dl_app=hello \\\n  dl_env=prod\n"
        "service=hello\nunit_dir=/etc/systemd/system\n"
    )
    assert EXPECTED_ROOT_COMMANDS in line
    assert line.endswith(EXPECTED_TAIL)
    assert (
        "ExecStart=${dl_current}/.venv/bin/python -m gunicorn --bind 127.0.0.1:8000 "
        "--workers 2 --error-logfile ${dl_shared}/log/gunicorn.log app:app\n"
    ) in line
    assert "ExecReload=/bin/kill -s HUP \\$MAINPID\n" in line
