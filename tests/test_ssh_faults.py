"""Faults injected into real SSH hosts (network namespaces, each with its own sshd and /srv):
a full disk at the lock, the upload, the unpack and the release-log write; a slow link cut off
mid-upload; SIGINT and SIGTERM at each phase of a deploy.

After every fault: the exit code says what happened, every host is on one release (the old
one, or the new one where the deploy was complete), no lock, no unfinished release and no partial
upload is left, and every release log reads whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Fleet, start_cli, wait_for

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]


def deployed(fleet: Fleet) -> dict[str, str | None]:
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 0, result.stdout + result.stderr
    return fleet.currents()


def demo(fleet: Fleet, index: int) -> Path:
    return fleet.hosts.host(index).srv / "demo"


def assert_clean(fleet: Fleet, before: dict[str, str | None]) -> None:
    """Every host on ``before``, nothing left behind, every log whole."""
    assert fleet.currents() == before
    for host in fleet.hosts.hosts:
        root = demo(fleet, host.index)
        assert not fleet.locked(host.index), host.name
        assert not list(root.glob(".deploylib/lock*")), host.name
        live = {before[host.name]} - {None}
        assert fleet.release_dirs(host.index) <= live | set(_logged(root)), host.name
        uploads = root / ".deploylib" / "uploads"
        assert not uploads.exists() or not list(uploads.iterdir()), host.name
        assert not list(root.glob(".current-*")), host.name


def _logged(root: Path) -> list[str]:
    log = root / ".deploylib" / "releases.jsonl"
    if not log.exists():
        return []
    text = log.read_text()
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text.splitlines()]  # every line reads whole
    return [e["release"] for e in entries if e["outcome"] == "success"]


def sleeping_on_hosts(fleet: Fleet) -> list[str]:
    """The ``sleep 30`` processes still running on the hosts (in their network namespaces)."""
    found = []
    for host in fleet.hosts.hosts:
        pids = subprocess.run(
            ["ip", "netns", "pids", host.namespace], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", b"30"]:
                found.append(f"{host.name}: pid {pid}")
    return found


def fill(path: Path) -> Path:
    filler = path / "FILLER"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


def lying_df(fleet: Fleet, index: int) -> None:
    """The host's df says there is plenty of room: the real disk fills during the deploy."""
    fleet.hosts.fake_command(
        index,
        "df",
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'; "
        "echo 'fake 99999999 0 99999999 0% /srv'",
    )


# ---------------------------------------------------------------------------- a full disk


def test_a_full_disk_at_the_lock_takes_no_lock_and_says_what_runs_there(
    fleet_of: FleetOf,
) -> None:
    fleet = fleet_of(3)
    fleet.hosts.small_disk(2, "demo", "1m")
    before = deployed(fleet)
    filler = fill(demo(fleet, 2))

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not write the deploy lock" in result.stdout
    assert f"h2: {before['h2']}" in result.stdout  # what it runs, not "(no release)"
    filler.unlink()
    assert_clean(fleet, before)


def test_a_full_disk_during_the_upload_leaves_no_partial_file(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.hosts.small_disk(2, "demo", "2m")
    before = deployed(fleet)
    lying_df(fleet, 2)
    (fleet.project.root / "app" / "big.bin").write_bytes(os.urandom(3_000_000))

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "h2" in result.stdout and "no target was switched" in result.stdout
    assert_clean(fleet, before)
    assert (
        json.loads((demo(fleet, 2) / ".deploylib/releases.jsonl").read_text().splitlines()[-1])[
            "outcome"
        ]
        == "failed"
    )


def test_a_full_disk_during_the_unpack_switches_nobody(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.hosts.small_disk(2, "demo", "2m")
    before = deployed(fleet)
    lying_df(fleet, 2)
    # small to upload, too big once unpacked
    (fleet.project.root / "app" / "zeros.bin").write_bytes(bytes(4_000_000))

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "push       h2               ✗" in result.stdout and "tar:" in result.stdout, (
        result.stdout
    )
    assert_clean(fleet, before)


def test_a_full_disk_at_the_log_write_keeps_the_log_whole(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    fleet.hosts.small_disk(2, "demo", "2m")
    deployed(fleet)
    fleet.edit_pipeline(
        "    verify(",
        '    run("[ {host} != h2 ] || dd if=/dev/zero of=/srv/demo/FILLER bs=64k || true"),\n'
        "    verify(",
    )
    result = fleet.project.cli("deploy", "--env", "fleet")

    # every host is live and verified: the log that could not be written is a warning
    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not write the release log" in result.stdout
    after = fleet.currents()
    assert len(set(after.values())) == 1
    (demo(fleet, 2) / "FILLER").unlink()
    assert_clean(fleet, after)


# ---------------------------------------------------------------------------- interrupted upload


def test_an_upload_cut_off_by_ctrl_c_leaves_no_partial_file(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    before = deployed(fleet)
    (fleet.project.root / "app" / "big.bin").write_bytes(os.urandom(3_000_000))
    veth = fleet.hosts.host(2).veth
    limit = ["rate", "400kbit", "burst", "16kbit", "latency", "400ms"]
    subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", "tbf", *limit], check=True)
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    try:
        uploads = demo(fleet, 2) / ".deploylib" / "uploads"
        deadline = time.monotonic() + 30
        while not list(uploads.glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(uploads.glob("*.part")), "the upload never started"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], check=False)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, out + err
    assert "interrupted" in out
    assert not fleet.hosts.wait_idle()  # the host's cat has ended, whatever it still wrote
    assert_clean(fleet, before)


# ---------------------------------------------------------------------------- signals at each phase


PHASES = {
    # phase: the pipeline change that holds the deploy there, touching a marker on h2
    "build": ('build("tar -czf {artifact} -C app .")', ""),  # the marker is on this machine
    "prepare": ('run("test ! -e FAIL_PREPARE"', 'run("touch /srv/in-phase && sleep 30"'),
    "restart": (
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        'switch(restart="echo {release} >> {shared_path}/restarts; '
        '[ {release} = $(cat /srv/first 2>/dev/null) ] || { touch /srv/in-phase; sleep 30; }")',
    ),
    "verify": (
        "test ! -e {current_path}/BROKEN",
        "[ {release} = $(cat /srv/first 2>/dev/null) ] || { touch /srv/in-phase; sleep 30; }",
    ),
}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_signal_at_each_phase_leaves_every_host_where_it_was(
    fleet_of: FleetOf, phase: str, signum: int
) -> None:
    fleet = fleet_of(2)
    before = deployed(fleet)
    for index in (1, 2):
        (fleet.hosts.host(index).srv / "first").write_text(f"{before['h1']}\n")
    old, new = PHASES[phase]
    if phase == "build":
        marker = fleet.project.root / "built-marker"
        new = f'build("touch {marker}; sleep 30")'
    else:
        marker = fleet.hosts.host(2).srv / "in-phase"
    fleet.edit_pipeline(old, new)
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    wait_for(marker, process)
    started = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)

    assert time.monotonic() - started < 20, out
    assert process.returncode == 1, out + err
    assert "interrupted" in out
    assert_clean(fleet, before)
    assert not sleeping_on_hosts(fleet), "a command given up on still runs on a host"


def test_ctrl_c_while_the_locks_are_taken_leaves_no_lock(fleet_of: FleetOf) -> None:
    """The lock command on h2 is cut off before its rename ran; the host finishes the command
    after deploylib gave up on it: still no lock is left behind, on any host."""
    fleet = fleet_of(2)
    before = deployed(fleet)
    marker = fleet.hosts.host(2).srv / "locking"
    fleet.hosts.fake_command(2, "mv", 'touch /srv/locking; sleep 3; exec /usr/bin/mv "$@"')
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    wait_for(marker, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 1, out + err
    assert "interrupted" in out and "nothing was changed" in out
    assert not fleet.hosts.wait_idle()  # h2 ran the rest of its lock command, if it was not stopped
    assert_clean(fleet, before)


def test_check_says_a_host_is_unreachable_not_that_it_is_not_writable(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    fleet.hosts.kill_sshd(2)
    result = fleet.project.cli("check", "--env", "fleet", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {row["host"]: row for row in json.loads(result.stdout)}
    assert rows["h1"]["ok"] and rows["h1"]["problems"] == []
    [problem] = rows["h2"]["problems"]
    assert "could not connect" in problem and "writable" not in problem


# ---------------------------------------------------------------------------- given-up commands

TIMEOUT_2 = "keep_releases = 3\ncommand_timeout = 2"


def test_a_command_that_timed_out_is_stopped_on_the_host(
    fleet_of: FleetOf,
) -> None:
    """A command that hit its deadline is not only abandoned by the controller: its processes
    on the host are stopped, so it cannot write there after the deploy ended and unlocked."""
    fleet = fleet_of(1)
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
        'run("sleep 30; echo late >> {deploy_to}/shared/LATE_WRITE", timeout=1),',
    )
    started = time.monotonic()
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "timed out after 1 s" in result.stdout
    assert time.monotonic() - started < 20  # the controller gave up, long before the command...
    assert not fleet.locked(1)  # ...and released the lock
    # ...and the command it gave up on is not left running on the host, without a lock
    assert not fleet.hosts.wait_idle()
    assert not (demo(fleet, 1) / "shared" / "LATE_WRITE").exists()


def test_ctrl_c_stops_the_remote_command_before_the_next_deploy(fleet_of: FleetOf) -> None:
    """Two deploys never run at once on a host: Ctrl-C during a migrate stops it on the host
    before the lock is released, so the next deploy's migrate runs alone."""
    fleet = fleet_of(1)
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
        'run("echo start-$$ >> {deploy_to}/shared/MIGRATIONS; sleep 6; '
        'echo end-$$ >> {deploy_to}/shared/MIGRATIONS", name="migrate", once=True),',
    )
    first = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    log = demo(fleet, 1) / "shared" / "MIGRATIONS"
    deadline = time.monotonic() + 30
    while log.read_text().count("start") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, out + err
    assert not fleet.locked(1)
    # a second deploy starts right away: it is not refused, and its migrate runs while the
    # interrupted one is still running
    second = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not fleet.hosts.wait_idle()  # whatever was still running has ended
    lines = log.read_text().split()
    # the interrupted migrate was stopped on the host: it never ends, and the next deploy's
    # migrate runs alone
    first_run, interrupted, second_run = (
        line[len("start-") :] for line in lines if "start" in line
    )
    assert lines == [
        f"start-{first_run}",
        f"end-{first_run}",
        f"start-{interrupted}",
        f"start-{second_run}",
        f"end-{second_run}",
    ], lines


def test_a_restart_that_timed_out_never_lands_after_the_put_back(fleet_of: FleetOf) -> None:
    """The new release's restart hits command_timeout and is stopped on the host before the
    put-back restarts the old release: the app runs what current says."""
    fleet = fleet_of(1)
    toml = fleet.project.root / "deploy.toml"
    toml.write_text(
        toml.read_text().replace("keep_releases = 3", "keep_releases = 3\ncommand_timeout = 2")
    )
    fleet.edit_pipeline(
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        'switch(restart="if [ -e SLOW ]; then sleep 4; fi; '
        'echo {release} > {shared_path}/running")',
    )
    first = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    old = fleet.current(1)
    (fleet.project.root / "app" / "SLOW").write_text("")
    second = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "every target is back on the release it had" in second.stdout + second.stderr
    assert fleet.current(1) == old
    assert not fleet.hosts.wait_idle()
    running = (demo(fleet, 1) / "shared" / "running").read_text().split()[0]
    assert running == old  # the app must run what current says


def test_a_switch_that_timed_out_never_lands_after_the_put_back(fleet_of: FleetOf) -> None:
    """The new release's switch stalls (a slow disk) past command_timeout: it is stopped on the
    host before the put-back, so no late rename points current at the removed release."""
    fleet = fleet_of(1)
    toml = fleet.project.root / "deploy.toml"
    toml.write_text(
        toml.read_text().replace("keep_releases = 3", "keep_releases = 3\ncommand_timeout = 2")
    )
    first = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    old = fleet.current(1)
    # the disk stalls while the *new* release's link is renamed into place
    fleet.hosts.fake_command(
        1,
        "mv",
        'if [ "$1" = -T ] && [ -e "$(dirname "$2")/$(readlink "$2")/SLOW" ]; then sleep 4; fi; '
        'exec /usr/bin/mv "$@"',
    )
    (fleet.project.root / "app" / "SLOW").write_text("")
    second = fleet.project.cli("deploy", "--env", "fleet", timeout=60)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "every target is back on the release it had" in second.stdout
    assert fleet.current(1) == old
    assert not fleet.hosts.wait_idle()
    now = fleet.current(1)
    assert now == old, (
        f"current -> {now}; release dir exists: {(demo(fleet, 1) / 'releases' / str(now)).exists()}"
    )


def test_a_command_given_up_on_is_stopped_on_a_host_whose_shell_warns_at_start(
    fleet_of: FleetOf,
) -> None:
    """A host whose shell writes to stderr before the command starts (here `bash: warning:
    setlocale`, from an LC_ALL the host lacks): a command that timed out is still found and
    stopped, and the pid line never reaches the message."""
    fleet = fleet_of(1)
    config = fleet.hosts.host(1).root / "sshd_config"
    config.write_text(config.read_text() + "SetEnv LC_ALL=en_ZZ.UTF-8\n")
    fleet.hosts.kill_sshd(1)
    fleet.hosts.start_sshd(1)
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
        'run("sleep 4; echo late >> {deploy_to}/shared/LATE_WRITE", timeout=1),',
    )
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not fleet.locked(1)
    assert not fleet.hosts.wait_idle()
    assert not (demo(fleet, 1) / "shared" / "LATE_WRITE").exists()
    assert "@@deploylib-pid" not in result.stdout


def test_a_hangup_mid_rollout_puts_every_host_back(fleet_of: FleetOf) -> None:
    """A rolling deploy (batch = 1) is in h1's verify when the terminal goes away (SIGHUP): h1 is
    put back, every lock released, exit 1."""
    fleet = fleet_of(2)
    fleet.configure(extra_ssh='[environments.fleet.strategy]\nkind = "rolling"\nbatch = 1\n')
    first = fleet.project.cli("deploy", "--env", "fleet")
    assert first.returncode == 0, first.stdout + first.stderr
    before = fleet.currents()
    (fleet.hosts.host(1).srv / "first").write_text(f"{before['h1']}\n")
    fleet.edit_pipeline(
        "test ! -e {current_path}/BROKEN",
        "[ {host} != h1 ] || [ {release} = $(cat /srv/first) ] || "
        "{ touch /srv/in-verify; sleep 30; }",
    )
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    wait_for(fleet.hosts.host(1).srv / "in-verify", process)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (process.returncode, out, err)
    assert fleet.currents() == before
    assert not fleet.locked(1) and not fleet.locked(2)
