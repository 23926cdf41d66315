"""Which SSH settings a host is reached with: deploy.toml's host entry, then the environment's
``[ssh]``, then ~/.ssh/config (User, Port, HostName, IdentityFile, ProxyJump), then the
defaults; ``check --verbose`` says what was resolved. The hosts here are aliases for a loopback
port where nothing listens: the check fails at once, after resolving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Project

ALIAS = """\
Host app1
  HostName 127.0.0.1
  Port 2201
  User cfguser
  IdentityFile ~/.ssh/id_app1
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(ALIAS)
    (home / ".ssh" / "known_hosts").write_text("")
    return home


def resolved(project: Project, home: Path, environment: str) -> dict[str, object]:
    project.write(
        "deploy.toml",
        (project.root / "deploy.toml").read_text().split("[environments.dev]")[0]
        + '[environments.dev]\nhosts = ["local"]\ndeploy_to = "target"\n'
        + environment,
    )
    result = project.cli("check", "--env", "x", "--json", "--verbose", env={"HOME": str(home)})
    assert result.returncode == 1, result.stdout + result.stderr  # nothing listens there
    [row] = json.loads(result.stdout)
    assert "could not connect" in row["problems"][0] or "refused" in row["problems"][0], row
    ssh: dict[str, object] = row["ssh"]
    return ssh


def test_ssh_config_fills_what_deploy_toml_does_not_say(project: Project, home: Path) -> None:
    ssh = resolved(project, home, '[environments.x]\nhosts = ["app1"]\n')
    assert (ssh["hostname"], ssh["port"], ssh["user"]) == ("127.0.0.1", 2201, "cfguser")
    assert ssh["identity_files"] == [str(home / ".ssh" / "id_app1"), "ssh-agent and default keys"]
    assert ssh["proxy_jump"] is None


def test_the_environments_ssh_settings_come_before_ssh_config(project: Project, home: Path) -> None:
    ssh = resolved(
        project,
        home,
        '[environments.x]\nhosts = ["app1"]\n[environments.x.ssh]\nport = 2202\nuser = "envuser"\n',
    )
    assert (ssh["hostname"], ssh["port"], ssh["user"]) == ("127.0.0.1", 2202, "envuser")


def test_deploy_tomls_key_file_is_offered_first_then_ssh_configs(
    project: Project, home: Path
) -> None:
    """Both are offered, in that order (and no agent or default key): what check shows is
    what the connection tries."""
    key = home / "deploy_key"
    ssh = resolved(
        project,
        home,
        f'[environments.x]\nhosts = ["app1"]\n[environments.x.ssh]\nkey_file = "{key}"\n',
    )
    assert ssh["identity_files"] == [str(key), str(home / ".ssh" / "id_app1")]


def test_a_host_entry_comes_first(project: Project, home: Path) -> None:
    ssh = resolved(
        project,
        home,
        '[environments.x]\nhosts = [{ address = "app1", port = 2203, user = "hostuser" }]\n'
        '[environments.x.ssh]\nport = 2202\nuser = "envuser"\n',
    )
    assert (ssh["port"], ssh["user"]) == (2203, "hostuser")


def test_check_verbose_says_it_in_a_line_per_host(project: Project, home: Path) -> None:
    project.write(
        "deploy.toml",
        (project.root / "deploy.toml").read_text() + '\n[environments.x]\nhosts = ["app1"]\n',
    )
    table = project.cli("check", "--env", "x", "--verbose", env={"HOME": str(home)})
    assert f"app1: cfguser@127.0.0.1:2201, keys {home}/.ssh/id_app1, ssh-agent" in table.stdout
    local = project.cli("check", "--env", "dev", "--verbose")
    assert "local: this machine, no SSH" in local.stdout
