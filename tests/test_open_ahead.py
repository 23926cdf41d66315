"""Connections opened while the build runs, over real SSH: the build sees the hosts' logins
happen; a failed build changes nothing and leaves no connection open; a connection that goes
silent during a long build is replaced, since nothing ran on it yet; a host that could not be
reached while the build ran, and can be by its end, is deployed to."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from deploylib.errors import DeployError
from tests.conftest import Fleet, start_cli, wait_for

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]

#: a build that waits (at most 20 s) until every host's sshd accepted one more login than it
#: had when the deploy started, then runs ``then``; exit 9 if they never do
WAIT_FOR_LOGINS = """\
set -u
logins() {{ grep -c 'Accepted publickey' "$1" || true; }}
for i in $(seq 400); do
  seen=0
  {checks}
  [ "$seen" = {count} ] && break
  sleep 0.05
done
[ "$seen" = {count} ] || {{ echo "no login during the build" >&2; exit 9; }}
{then}
"""


#: a listener on ADDRESS:22 that closes three connections as they come, then exits
HANG_UP = """\
import socket
server = socket.create_server(("{0}", 22))
print("listening", flush=True)
for _ in range(3):
    server.accept()[0].close()
"""


def established_to(address: str) -> bool:
    """This machine has an established TCP connection to ``address``'s SSH port."""
    listed = subprocess.run(
        ["ss", "-tnH", "state", "established", "dst", address, "dport", "= :22"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(listed.stdout.strip())


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_logins(fleet: Fleet, then: str) -> None:
    """Make the pipeline's build wait for a login on every host before doing ``then``."""
    checks = "\n  ".join(
        f'[ "$(logins {shlex.quote(str(h.sshd_log))})" -gt {h.connections()} ] '
        "&& seen=$((seen + 1))"
        for h in fleet.hosts.hosts
    )
    script = WAIT_FOR_LOGINS.format(checks=checks, count=len(fleet.hosts.hosts), then=then)
    fleet.project.write("build.sh", script)
    fleet.edit_pipeline('build("tar -czf {artifact} -C app .")', 'build("sh build.sh {artifact}")')


def test_connections_open_while_the_build_runs(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    before = fleet.connections()
    wait_for_logins(fleet, 'tar -czf "$1" -C app .')

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 0, result.stdout + result.stderr
    assert None not in fleet.currents().values()
    # the connection opened ahead is the one the deploy used: one per host
    assert [a - b for a, b in zip(fleet.connections(), before, strict=True)] == [1, 1]


def test_a_failed_build_changes_nothing_and_closes_the_connections_opened_ahead(
    fleet_of: FleetOf,
) -> None:
    fleet = fleet_of(2)
    wait_for_logins(fleet, "echo 'the build broke' >&2; exit 3")

    # in this process: the connections must be closed by the run, not by its exit
    with pytest.raises(DeployError) as failed:
        fleet.project.deploy("fleet")

    assert failed.value.exit_code == 1 and "nothing was changed" in str(failed.value)
    for host in fleet.hosts.hosts:
        assert not (host.srv / "demo").exists()  # not even the layout
    assert fleet.hosts.wait_idle(timeout=10) == {}  # no session left on any host


def test_a_connection_that_goes_silent_during_the_build_is_opened_again(
    fleet_of: FleetOf,
) -> None:
    fleet = fleet_of(1)  # keepalives: every 1 s, silent after 3 s
    ready = fleet.project.root / "logged-in"
    go = fleet.project.root / "go-on"
    wait_for_logins(
        fleet,
        f"touch {ready}\n"
        f'for i in $(seq 400); do [ -e {go} ] && break; sleep 0.05; done\ntar -czf "$1" -C app .',
    )
    before = fleet.connections()
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    try:
        wait_for(ready, process)
        fleet.hosts.cut(1)
        # the keepalives find the link dead and close the connection: its socket leaves
        # ESTABLISHED (its FIN cannot get through)
        assert wait_until(lambda: not established_to(fleet.hosts.host(1).address), 30)
        fleet.hosts.mend(1)
        go.touch()
        out, err = process.communicate(timeout=60)
    finally:
        fleet.hosts.mend(1)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert fleet.current(1) is not None
    # the one opened ahead, then the one the deploy ran on
    assert fleet.connections()[0] - before[0] == 2


def test_a_host_that_comes_back_during_the_build_is_deployed_to(fleet_of: FleetOf) -> None:
    fleet = fleet_of(1)
    building = fleet.project.root / "building"
    go = fleet.project.root / "go-on"
    fleet.project.write(
        "build.sh",
        f"touch {building}\nfor i in $(seq 400); do [ -e {go} ] && break; sleep 0.05; done\n"
        'tar -czf "$1" -C app .\n',
    )
    fleet.edit_pipeline('build("tar -czf {artifact} -C app .")', 'build("sh build.sh {artifact}")')
    host = fleet.hosts.host(1)
    fleet.hosts.kill_sshd(1)
    # in sshd's place, a listener that hangs up on each connection (no SSH banner) and counts
    # them: the open ahead gives up after its three attempts, the third one seen here
    listener = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, sys.executable, "-c", HANG_UP.format(host.address)],
        stdout=subprocess.PIPE,
        text=True,
    )
    process: subprocess.Popen[str] | None = None
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
        wait_for(building, process)
        assert listener.wait(timeout=60) == 0  # three attempts, all refused
        fleet.hosts.start_sshd(1)
        go.touch()
        out, err = process.communicate(timeout=60)
    finally:
        for started in (listener, process):
            if started is not None and started.poll() is None:
                started.kill()
    assert process.returncode == 0, out + err
    assert fleet.current(1) is not None
