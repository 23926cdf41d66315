"""``exec`` and ``logs`` over real SSH to hosts in network namespaces: each host's own output
with its prefix, the worst exit status, secrets masked, commands run verbatim, the release's
venv on PATH, following logs, and Ctrl-C leaving nothing running on the hosts."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.conftest import Fleet, start_cli
from tests.test_exec_logs import HOSTILE, _Reader, expected_of, lines_of

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]


@pytest.fixture
def fleet(fleet_of: FleetOf) -> Fleet:
    """Three hosts with a release deployed, and a secret in the env file."""
    fleet = fleet_of(3)
    fleet.project.write(".env", "API_TOKEN=tok-5ecret-value\n")
    done = fleet.project.cli("deploy", "--env", "fleet")
    assert done.returncode == 0, done.stdout + done.stderr
    return fleet


def test_exec_shows_each_hosts_own_output_and_exits_with_the_worst_status(
    fleet: Fleet,
) -> None:
    script = (
        'uname -n; echo "token $API_TOKEN"; pwd; case $(uname -n) in h2) exit 3;; h3) exit 5;; esac'
    )
    done = fleet.project.cli("exec", "--env", "fleet", "--", script)
    assert done.returncode == 5, done.stdout + done.stderr
    for name in ("h1", "h2", "h3"):
        assert lines_of(done.stdout, name) == [name, "token ***", "/srv/demo/current"]
    assert "tok-5ecret-value" not in done.stdout + done.stderr
    assert "@@deploylib-pid" not in done.stderr
    assert "failed on h2 (exit 3), h3 (exit 5)" in done.stderr
    assert fleet.hosts.wait_idle(10) == {}


def test_exec_once_runs_on_the_first_chosen_host_only(fleet: Fleet) -> None:
    done = fleet.project.cli("exec", "--env", "fleet", "--once", "--", "uname -n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["h1 | h1"]
    chosen = fleet.project.cli("exec", "--env", "fleet", "--hosts", "h3,h2", "--", "uname -n")
    assert sorted(chosen.stdout.splitlines()) == ["h2 | h2", "h3 | h3"]


def test_exec_runs_a_hostile_command_exactly_as_given(fleet: Fleet) -> None:
    done = fleet.project.cli("exec", "--env", "fleet", "--hosts", "h2", "--", HOSTILE)
    assert done.returncode == 0, done.stderr
    assert lines_of(done.stdout, "h2") == expected_of(HOSTILE)


def test_exec_puts_the_venv_of_the_live_release_first_on_path(fleet: Fleet) -> None:
    release = fleet.current(1)
    venv_bin = fleet.hosts.host(1).srv / "demo" / "releases" / str(release) / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "manage").write_text("#!/bin/sh\necho managed by $(command -v manage)\n")
    (venv_bin / "manage").chmod(0o755)
    done = fleet.project.cli("exec", "--env", "fleet", "--", "manage")
    assert lines_of(done.stdout, "h1") == ["managed by /srv/demo/current/.venv/bin/manage"]
    assert done.returncode == 127  # h2 and h3 have no venv: no such command there


def test_an_unreachable_host_is_named_and_exits_255(fleet: Fleet) -> None:
    fleet.hosts.kill_sshd(2)
    done = fleet.project.cli("exec", "--env", "fleet", "--", "uname -n")
    assert done.returncode == 255, done.stdout + done.stderr
    assert lines_of(done.stdout, "h1") == ["h1"] and lines_of(done.stdout, "h3") == ["h3"]
    assert any(line.startswith("h2 | deploylib: ") for line in done.stderr.splitlines())


def test_ctrl_c_stops_exec_on_every_host(fleet: Fleet) -> None:
    process = start_cli(fleet.project.root, "exec", "--env", "fleet", "--", "uname -n; sleep 60")
    seen = _Reader(process)
    for name in ("h1", "h2", "h3"):
        seen.wait_for(f"{name} | {name}")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert process.returncode == 130, seen.text()
    assert fleet.hosts.wait_idle(10) == {}


def test_logs_shows_the_last_lines_of_each_hosts_logs(fleet: Fleet) -> None:
    for host in fleet.hosts.hosts:
        log = host.srv / "demo" / "shared" / "log" / "app.log"
        log.write_text("".join(f"{host.name} line {i}\n" for i in range(1, 51)))
    done = fleet.project.cli("logs", "--env", "fleet", "--lines", "2")
    assert done.returncode == 0, done.stderr
    for name in ("h1", "h2", "h3"):
        assert lines_of(done.stdout, name) == [f"{name} line 49", f"{name} line 50"]


def test_logs_follow_streams_new_lines_and_ctrl_c_leaves_no_tail(fleet: Fleet) -> None:
    logs = [host.srv / "demo" / "shared" / "log" / "app.log" for host in fleet.hosts.hosts]
    for log in logs:
        log.write_text("before\n")
    process = start_cli(
        fleet.project.root, "logs", "--env", "fleet", "--follow", "--lines", "1", "log/app.log"
    )
    seen = _Reader(process)
    for name in ("h1", "h2", "h3"):
        seen.wait_for(f"{name} | before")
    with logs[1].open("a") as file:
        file.write("appended while following\n")
    seen.wait_for("h2 | appended while following")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert process.returncode == 0, seen.text()
    assert fleet.hosts.wait_idle(10) == {}  # every remote tail is gone


def test_logs_follow_ends_in_bounded_time_when_a_host_dies(fleet: Fleet) -> None:
    for host in fleet.hosts.hosts:
        (host.srv / "demo" / "shared" / "log" / "app.log").write_text("")
    process = start_cli(fleet.project.root, "logs", "--env", "fleet", "--follow", "--lines", "0")
    seen = _Reader(process)
    deadline = time.monotonic() + 30
    while len([i for i in (1, 2, 3) if fleet.hosts.sessions(i)]) < 3:
        assert time.monotonic() < deadline and process.poll() is None, seen.text()
        time.sleep(0.05)
    fleet.hosts.cut(2)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert time.monotonic() - started < 15  # keepalives: 1 s x 3 in this fleet
    # Ctrl-C came before the keepalives gave h2 up: its tail counts as stopped, not failed
    assert process.returncode in (0, 255), seen.text()
    fleet.hosts.mend(2)
    assert not fleet.hosts.sessions(1) and not fleet.hosts.sessions(3)
