"""The firewall applied for real with nftables, over SSH, to hosts in network namespaces: what
it lets in and drops (connections from this machine, the controller), that SSH keeps working,
that a second apply changes nothing, that other tables are never touched, and that a config
cutting SSH is refused before the host is contacted."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from deploylib import firewall
from deploylib.backends.ssh import SSHBackend
from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError
from tests.conftest import Fleet
from tests.testbed import sshhosts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed"),
]

FleetOf = Callable[[int], Fleet]

LISTENER = """\
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


@contextlib.contextmanager
def listening(host: sshhosts.TestHost, *ports: int) -> Iterator[None]:
    """TCP listeners on ``ports`` inside the host's namespace, stopped by PID afterwards."""
    started: list[subprocess.Popen[str]] = []
    try:
        for port in ports:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, sys.executable, "-c", LISTENER,
                 host.address, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            started.append(process)
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=5)


def reachable(host: sshhosts.TestHost, port: int) -> bool:
    """A TCP connect from this machine (outside the namespace) succeeds within 1 s."""
    try:
        with socket.create_connection((host.address, port), timeout=1):
            return True
    except OSError:
        return False


def nft(host: sshhosts.TestHost, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", host.namespace, "nft", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def with_firewall(fleet: Fleet, body: str) -> Environment:
    config = fleet.project.root / "deploy.toml"
    text = config.read_text().split("[environments.fleet.firewall]")[0]
    config.write_text(text + f"[environments.fleet.firewall]\n{body}\n")
    return load_environment(config, "fleet", environ={})


def apply(env: Environment, *, dry_run: bool = False) -> firewall.FirewallOutcome:
    """One apply over a new SSH connection (so an established one proves nothing)."""
    host = env.hosts[0]
    backend = SSHBackend(host, env.ssh, project_dir=env.project_dir, default_timeout=30)
    try:
        return firewall.apply(backend, env, host, dry_run=dry_run)
    finally:
        backend.close()


@pytest.fixture
def fleet(fleet_of: FleetOf) -> Fleet:
    fleet = fleet_of(1)
    host = fleet.hosts.host(1)
    nft(host, "add", "table", "inet", "other")
    nft(host, "add", "chain", "inet", "other", "input",
        "{ type filter hook input priority 10; policy accept; }")  # fmt: skip
    nft(host, "add", "rule", "inet", "other", "input", "tcp", "dport", "7777", "counter", "accept")
    return fleet


def test_drop_lets_in_what_is_allowed_and_keeps_ssh_and_other_tables(fleet: Fleet) -> None:
    host = fleet.hosts.host(1)
    other = nft(host, "list", "table", "inet", "other")
    env = with_firewall(fleet, 'policy = "drop"\nallow = [22, 8000]')
    with listening(host, 8000, 9000):
        assert reachable(host, 8000) and reachable(host, 9000)

        dry = apply(env, dry_run=True)
        assert dry.changed and not dry.applied and "+ tcp dport 8000 accept" in dry.diff
        assert "deploylib" not in nft(host, "list", "tables")

        first = apply(env)
        assert first.changed and first.applied
        assert reachable(host, 8000)
        assert not reachable(host, 9000)

        # SSH still works (a new connection), and a second apply changes nothing
        second = apply(env)
        assert not second.changed and second.diff == [] and not second.applied
        listed = nft(host, "list", "table", "inet", "deploylib")
        rules = [line.strip() for line in listed.splitlines() if "comment" in line]
        assert len(rules) == len(set(rules)) == 6
        assert nft(host, "list", "table", "inet", "other") == other

        # 8000 taken out of allow: closed again, in one replace
        env = with_firewall(fleet, 'policy = "drop"\nallow = [22]')
        third = apply(env)
        assert third.diff == ["- tcp dport 8000 accept"]
        assert not reachable(host, 8000)
        assert nft(host, "list", "table", "inet", "other") == other
        assert reachable(host, 22)


def test_a_firewall_cutting_ssh_is_refused_and_the_host_keeps_its_rules(fleet: Fleet) -> None:
    host = fleet.hosts.host(1)
    apply(with_firewall(fleet, 'policy = "drop"\nallow = [22, 8000]'))
    before = nft(host, "list", "ruleset")
    connections = host.connections()

    with pytest.raises(ConfigError) as error:
        with_firewall(fleet, 'policy = "drop"\nallow = [8000]')
    assert error.value.exit_code == 2
    assert error.value.key == "environments.fleet.firewall.allow"
    assert "port 22" in error.value.message
    result = fleet.project.cli("check", "--env", "fleet")
    assert result.returncode == 2, result.stdout + result.stderr

    assert nft(host, "list", "ruleset") == before
    assert host.connections() == connections  # never contacted
    assert reachable(host, 22)


def test_accept_only_adds_rules(fleet: Fleet) -> None:
    host = fleet.hosts.host(1)
    env = with_firewall(fleet, "allow = [8000]")
    with listening(host, 8000, 9000):
        outcome = apply(env)
        assert outcome.changed and "policy accept" in outcome.ruleset
        assert reachable(host, 8000) and reachable(host, 9000)
        assert not apply(env).changed


def test_setup_applies_the_firewall_once_and_says_what_changed(fleet: Fleet) -> None:
    """Through `deploylib setup`, as a user runs it: the layout and the firewall together."""
    host = fleet.hosts.host(1)
    with_firewall(fleet, 'policy = "drop"\nallow = [22, 8000]')
    with listening(host, 8000, 9000):
        dry = fleet.project.cli("setup", "--env", "fleet", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "firewall would change: + tcp dport 8000 accept" in dry.stdout
        assert "table inet deploylib {" in dry.stdout  # the ruleset it would apply
        assert reachable(host, 9000)  # nothing applied

        first = fleet.project.cli("setup", "--env", "fleet")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "firewall changed: + policy drop" in first.stdout
        assert reachable(host, 8000) and not reachable(host, 9000)
        assert (host.srv / "demo" / "releases").is_dir()

        second = fleet.project.cli("setup", "--env", "fleet")  # over SSH, through the firewall
        assert second.returncode == 0, second.stdout + second.stderr
        assert "nothing to change" in second.stdout and "firewall" not in second.stdout

        with_firewall(fleet, 'policy = "drop"\nallow = [22]')
        third = fleet.project.cli("setup", "--env", "fleet")
        assert "firewall changed: - tcp dport 8000 accept" in third.stdout, third.stdout
        assert not reachable(host, 8000)
    log = (host.srv / "demo" / ".deploylib" / "releases.jsonl").read_text().splitlines()
    assert len(log) == 3 and all('"event": "setup"' in line for line in log)


def test_check_names_the_ports_the_firewall_drops_and_tries_them(fleet: Fleet) -> None:
    host = fleet.hosts.host(1)
    fleet.edit_pipeline(
        'verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0)',
        'verify(tcp(8000), command("true"), attempts=2, wait=0)',
    )
    fleet.edit_pipeline("import Pipeline,", "import Pipeline, tcp,")
    with_firewall(fleet, 'policy = "drop"\nallow = [22]')
    assert fleet.project.cli("setup", "--env", "fleet").returncode == 0
    with listening(host, 8000):
        warned = fleet.project.cli("check", "--env", "fleet")
        assert warned.returncode == 0, warned.stdout + warned.stderr  # a warning, not a failure
        assert "port 8000 (connect tcp" in warned.stdout and "firewall drops it" in warned.stdout

        tried = fleet.project.cli("check", "--env", "fleet", "--ports")
        assert tried.returncode == 1
        assert f"{host.name}: port 8000 no answer" in tried.stdout

        with_firewall(fleet, 'policy = "drop"\nallow = [22, 8000]')
        assert fleet.project.cli("setup", "--env", "fleet").returncode == 0
        opened = fleet.project.cli("check", "--env", "fleet", "--ports")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert f"{host.name}: port 8000 open" in opened.stdout
        assert "warning" not in opened.stdout
