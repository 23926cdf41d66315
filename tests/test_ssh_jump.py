"""SSH through a jump host (ProxyJump in ~/.ssh/config), and hosts that never speak SSH.

The target is a second sshd inside h1's namespace, on 127.0.0.1:2222 there: reachable only
through h1's sshd. The deploy runs as a subprocess with HOME set to a directory whose
``.ssh/config`` names the jump host, as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BASIC_TOML, Fleet, Project, program
from tests.testbed.slowhttp import SilentListener
from tests.testbed.sshhosts import InnerHost

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]


@dataclass
class Jump:
    fleet: Fleet
    inner: InnerHost
    home: Path

    @property
    def project(self) -> Project:
        return self.fleet.project

    @property
    def jump_address(self) -> str:
        return self.fleet.hosts.host(1).address

    def ssh_config(self, proxy_jump: str) -> None:
        ssh = self.home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        (ssh / "config").write_text(
            f"Host target\n  HostName 127.0.0.1\n  Port {self.inner.port}\n"
            f"  ProxyJump {proxy_jump}\n"
        )

    def configure(self, known_hosts: str, extra_ssh: str = "") -> Path:
        """deploy.toml's environment ``jump``: the host ``target`` (an ssh config alias), with
        a known_hosts file holding ``known_hosts``; returns that file."""
        path = self.project.root / "known_hosts_jump"
        path.write_text(known_hosts)
        self.project.write(
            "deploy.toml",
            BASIC_TOML
            + '\n[environments.jump]\nhosts = [{ address = "target", user = "root", '
            + 'name = "inner" }]\ndeploy_to = "/srv/demo"\n[environments.jump.ssh]\n'
            + f'key_file = "{self.fleet.hosts.client_key}"\nknown_hosts = "{path}"\n'
            + "connect_timeout = 2\nchannel_timeout = 3\nalive_interval = 1\n"
            + extra_ssh,
        )
        return path

    def jump_key_line(self) -> str:
        return next(
            line + "\n"
            for line in self.fleet.hosts.known_hosts.read_text().splitlines()
            if line.startswith(self.jump_address + " ")
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.project.cli(*args, env={"HOME": str(self.home)}, timeout=120)

    def inner_current(self) -> str | None:
        link = self.inner.srv / "demo" / "current"
        return link.readlink().name if link.is_symlink() else None


@pytest.fixture
def jump(fleet_of: FleetOf, tmp_path: Path) -> Jump:
    fleet = fleet_of(1)
    inner = fleet.hosts.start_inner_sshd(1, port=2222)
    made = Jump(fleet, inner, tmp_path / "home")
    made.ssh_config(f"root@{made.jump_address}")
    return made


def test_deploy_through_a_jump_host_whose_key_is_known(jump: Jump) -> None:
    jump.configure(jump.jump_key_line() + jump.inner.known_hosts_line())

    result = jump.cli("deploy", "--env", "jump")

    assert result.returncode == 0, result.stdout + result.stderr
    assert jump.inner_current() is not None  # deployed on the inner host, through h1
    assert not (jump.fleet.hosts.host(1).srv / "demo").exists()
    assert "Accepted publickey" in (jump.inner.root / "sshd.log").read_text()
    check = jump.cli("check", "--env", "jump", "--verbose")
    assert check.returncode == 0, check.stdout + check.stderr
    reached = f"inner: root@127.0.0.1:{jump.inner.port} via root@{jump.jump_address}"
    assert reached in check.stdout, check.stdout


def test_a_jump_host_whose_key_is_unknown_is_refused_unless_accept_new(jump: Jump) -> None:
    known = jump.configure(jump.inner.known_hosts_line())

    refused = jump.cli("deploy", "--env", "jump")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"host key of jump host {jump.jump_address} is not in" in refused.stdout
    assert jump.inner_current() is None
    assert "Accepted publickey" not in (jump.inner.root / "sshd.log").read_text()

    jump.configure(known.read_text(), extra_ssh="accept_new = true\n")
    trusted = jump.cli("deploy", "--env", "jump")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert jump.jump_key_line() in known.read_text()  # remembered, as OpenSSH's accept-new


def test_a_jump_host_whose_key_changed_is_refused_even_with_accept_new(jump: Jump) -> None:
    other = jump.project.root / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    jump.configure(
        f"{jump.jump_address} {kind} {key}\n" + jump.inner.known_hosts_line(),
        extra_ssh="accept_new = true\n",
    )

    refused = jump.cli("deploy", "--env", "jump")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"host key of jump host {jump.jump_address} does not match" in refused.stdout
    assert jump.inner_current() is None


def test_a_jump_host_that_never_answers_fails_in_bounded_time(jump: Jump) -> None:
    with SilentListener() as silent:
        jump.ssh_config(f"root@127.0.0.1:{silent.port}")
        jump.configure(jump.jump_key_line() + jump.inner.known_hosts_line())
        started = time.monotonic()
        result = jump.cli("deploy", "--env", "jump")
        took = time.monotonic() - started

    assert result.returncode == 1, result.stdout + result.stderr
    # 3 attempts x connect_timeout 2 s, backoff, start-up
    assert took < 30, took
    assert f"no SSH banner from jump host root@127.0.0.1:{silent.port} within 2 s" in result.stdout
    assert "Traceback" not in result.stderr
    assert jump.inner_current() is None


def silent_environment(project: Project, port: int) -> None:
    """The environment ``silent``: one host at 127.0.0.1:``port``, where nothing speaks SSH."""
    empty = project.root / "known_hosts_empty"
    empty.write_text("")
    project.write(
        "deploy.toml",
        BASIC_TOML
        + "\n[environments.silent]\n"
        + f'hosts = [{{ address = "127.0.0.1", port = {port}, user = "root" }}]\n'
        + 'deploy_to = "/srv/demo"\n[environments.silent.ssh]\n'
        + f'known_hosts = "{empty}"\nconnect_timeout = 1\n',
    )


def test_a_host_that_never_sends_a_banner_fails_cleanly(project: Project) -> None:
    with SilentListener() as silent:
        silent_environment(project, silent.port)
        started = time.monotonic()
        result = project.cli("check", "--env", "silent", timeout=120)
        took = time.monotonic() - started
        attempts = silent.accepted

    assert result.returncode != 0, result.stdout + result.stderr
    assert took < 20, took
    assert attempts >= 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"no SSH banner from root@127.0.0.1:{silent.port} within 1 s" in result.stdout


def test_a_deploy_to_a_host_that_never_answers_does_not_try_to_unlock_it(
    project: Project,
) -> None:
    """No lock command reached it, so there is no lock to release there: the run ends after
    the lock's attempts, without one more connection (and its timeout) for an unlock."""
    with SilentListener() as silent:
        silent_environment(project, silent.port)
        result = project.cli("deploy", "--env", "silent", timeout=120)
        attempts = silent.accepted

    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "could not release the lock" not in result.stdout + result.stderr
    # opened ahead during the build, then the lock's round of attempts: none for an unlock
    assert attempts <= 3, (attempts, result.stdout + result.stderr)


def test_a_jump_host_whose_link_dies_mid_deploy_ends_the_deploy_in_bounded_time(
    jump: Jump,
) -> None:
    jump.configure(jump.jump_key_line() + jump.inner.known_hosts_line())
    jump.fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE"', 'run("touch /srv/preparing && sleep 30"'
    )
    process = subprocess.Popen(
        program("deploy", "--env", "jump"),
        cwd=jump.project.root,
        env={**os.environ, "CI": "true", "HOME": str(jump.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        marker = jump.inner.srv / "preparing"
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the deploy never reached the prepare step"
        started = time.monotonic()
        jump.fleet.hosts.cut(1)  # the jump host's link: the inner host is cut off with it
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    assert process.returncode == 1, out + err
    assert took < 20, took  # keepalives 1 s x 3 through the jump host, and the clean-up
    assert "stopped answering" in out
    assert jump.inner_current() is None
