"""Deploys over real SSH to hosts in network namespaces: fleets, failures, faults, host keys."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Fleet, start_cli, wait_for

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]


@pytest.mark.parametrize("count", [1, 3, 10])
def test_deploy_to_n_hosts_one_connection_each(fleet_of: FleetOf, count: int) -> None:
    fleet = fleet_of(count)
    before = fleet.connections()
    result = fleet.project.cli("deploy", "--env", "fleet", "--revision", "abc1234")
    assert result.returncode == 0, result.stdout + result.stderr
    releases = set(fleet.currents().values())
    assert len(releases) == 1 and None not in releases
    [release] = releases
    assert release is not None  # every host is on a release
    assert [after - b for after, b in zip(fleet.connections(), before, strict=True)] == [1] * count
    for host in fleet.hosts.hosts:
        assert (host.srv / "demo" / "releases" / release / "REVISION").read_text() == (
            f"{release} abc1234\n"
        )
        assert not fleet.locked(host.index)
        log = (host.srv / "demo" / ".deploylib" / "releases.jsonl").read_text().splitlines()
        assert json.loads(log[-1])["outcome"] == "success"


def test_prepare_failure_on_one_host_switches_nobody(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    before = fleet.currents()
    fleet.edit_pipeline('run("test ! -e FAIL_PREPARE"', 'run("test ! -e /srv/FAIL_HERE"')
    (fleet.hosts.host(2).srv / "FAIL_HERE").touch()

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "h2" in result.stdout and "no target was switched" in result.stdout
    assert fleet.currents() == before
    for index in (1, 2, 3):
        assert fleet.release_dirs(index) == {before["h1"]}
        assert not fleet.locked(index)


def deployed(fleet: Fleet) -> dict[str, str | None]:
    """Deploy once (it must succeed); return where every host is."""
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    return fleet.currents()


def slow_prepare(fleet: Fleet, seconds: int) -> None:
    """The prepare step touches /srv/preparing on each host, then sleeps ``seconds``."""
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE"', f'run("touch /srv/preparing && sleep {seconds}"'
    )


def deploy_then_break(fleet: Fleet, index: int) -> dict[str, str | None]:
    """Deploy once; from then on, host ``index`` is unhealthy on every new release (its restart
    marks the release, verify checks the mark). Returns where every host is."""
    fleet.edit_pipeline("test ! -e {current_path}/BROKEN", "test ! -e /srv/UNHEALTHY-{release}")
    fleet.edit_pipeline(
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        'switch(restart="echo {release} >> {shared_path}/restarts; '
        f"if [ {{host}} = h{index} ] && [ -e /srv/first-done ]; then "
        'touch /srv/UNHEALTHY-{release}; fi")',
    )
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    (fleet.hosts.host(index).srv / "first-done").touch()
    return fleet.currents()


def test_verify_failure_on_one_host_reverts_every_host(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    before = deploy_then_break(fleet, 3)

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "every target is back on the release it had" in result.stdout
    assert fleet.currents() == before
    for index in (1, 2, 3):
        restarts = (fleet.hosts.host(index).srv / "demo/shared/restarts").read_text().split()
        assert restarts[-1] == before["h1"]  # restarted on the old release after the revert
        assert fleet.release_dirs(index) == {before["h1"]}
        assert not fleet.locked(index)


def test_link_cut_mid_deploy_ends_in_bounded_time(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    before = deployed(fleet)
    slow_prepare(fleet, 3)
    process = start_deploy(fleet, 2, "preparing")
    started = time.monotonic()
    fleet.hosts.cut(2)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - started

    assert process.returncode == 1, out + err
    assert took < 20, took  # alive_interval 1 s x 3, plus the reachable hosts' own work
    assert "h2" in out and "stopped answering" in out
    assert fleet.current(1) == before["h1"] and fleet.current(3) == before["h3"]
    for index in (1, 3):
        assert fleet.release_dirs(index) == {before["h1"]}
        assert not fleet.locked(index)
    fleet.hosts.mend(2)
    assert fleet.current(2) == before["h2"]  # never switched


def test_unknown_host_key_is_refused_and_accept_new_trusts_it(fleet_of: FleetOf) -> None:
    fleet = fleet_of(1)
    empty = fleet.project.root / "known_hosts_empty"
    empty.write_text("")
    fleet.configure(known_hosts=str(empty))
    refused = fleet.project.cli("deploy", "--env", "fleet")
    assert refused.returncode == 1
    address = fleet.hosts.host(1).address
    assert f"host key of {address} is not in" in refused.stdout
    assert fleet.current(1) is None and not (fleet.hosts.host(1).srv / "demo").exists()

    fleet.configure(known_hosts=str(empty), extra_ssh="accept_new = true\n")
    trusted = fleet.project.cli("deploy", "--env", "fleet")
    assert trusted.returncode == 0, trusted.stdout
    assert address in empty.read_text()

    # the same address with another key: a changed key is refused, accept_new or not
    other = fleet.hosts.host(1).root / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    algo, blob = Path(f"{other}.pub").read_text().split()[:2]
    empty.write_text(f"{address} {algo} {blob}\n")
    changed = fleet.project.cli("deploy", "--env", "fleet")
    assert changed.returncode == 1 and "does not match" in changed.stdout


def test_concurrent_deploys_the_second_gets_exit_3(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    # the first deploy holds its locks until the second one has ended (at most 60 s)
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE"',
        'run("touch /srv/preparing; i=0; while [ ! -e /srv/go ] && [ $i -lt 600 ]; '
        'do sleep 0.1; i=$((i+1)); done"',
    )
    first = start_deploy(fleet, 1, "preparing")
    second = fleet.project.cli("deploy", "--env", "fleet")
    for host in fleet.hosts.hosts:
        (host.srv / "go").touch()
    out, err = first.communicate(timeout=60)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "locked by" in second.stdout + second.stderr
    assert first.returncode == 0, out + err


def test_roles_hosts_selection_and_migrate_once(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.configure(roles={1: ["web"], 2: ["web", "db"], 3: ["worker"]})
    fleet.edit_pipeline("    switch(", '    migrate("touch /srv/migrated-{release}"),\n    switch(')
    fleet.edit_pipeline("import Pipeline,", "import Pipeline, migrate,")
    result = fleet.project.cli("deploy", "--env", "fleet", "--roles", "web")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fleet.current(3) is None and fleet.current(1) == fleet.current(2)
    migrated = [h.index for h in fleet.hosts.hosts if list(h.srv.glob("migrated-*"))]
    assert migrated == [2]  # the db host
    only = fleet.project.cli("deploy", "--env", "fleet", "--hosts", "h3")
    assert only.returncode == 0
    assert fleet.current(3) is not None and list(fleet.hosts.host(3).srv.glob("migrated-*"))


def test_check_reports_every_host_and_changes_nothing(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    fleet.hosts.kill_sshd(2)
    result = fleet.project.cli("check", "--env", "fleet", "--json")
    rows = json.loads(result.stdout)
    assert result.returncode == 1
    assert rows[0]["host"] == "h1" and rows[0]["ok"] and rows[0]["user"] == "root"
    assert rows[0]["writable"] and rows[0]["free_mb"] > 0
    assert rows[1]["host"] == "h2" and not rows[1]["ok"] and "refused" in rows[1]["problems"][0]
    assert not (fleet.hosts.host(1).srv / "demo").exists()


def test_secrets_are_never_on_a_remote_command_line(fleet_of: FleetOf) -> None:
    fleet = fleet_of(1)
    secret = "s3cr3t-value-on-the-wire"
    fleet.project.write(".env", f'API_TOKEN={secret}\nMULTI="line one\\nline two"\n')
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE"',
        'run("printf %s \\"$API_TOKEN|$MULTI\\" > /srv/seen && sleep 1.5"',
    )
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    seen.append(cmdline.read_bytes().decode(errors="replace"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = fleet.project.cli("deploy", "--env", "fleet")
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (fleet.hosts.host(1).srv / "seen").read_text() == f"{secret}|line one\nline two"
    assert any("sleep 1.5" in line for line in seen)  # the watcher did see the command
    assert not any(secret in line for line in seen)
    assert secret not in result.stdout + result.stderr


def test_a_long_quiet_command_is_not_mistaken_for_a_dead_link(fleet_of: FleetOf) -> None:
    fleet = fleet_of(1)
    # keepalives every second, 3 unanswered would mean dead: a 5 s silent command must pass
    fleet.edit_pipeline('run("test ! -e FAIL_PREPARE"', 'run("sleep 5"')
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 0, result.stdout + result.stderr


def start_deploy(fleet: Fleet, marker_host: int, marker: str) -> subprocess.Popen[str]:
    """Start a deploy in the background; return once ``marker`` exists on that host's /srv."""
    process = start_cli(fleet.project.root, "deploy", "--env", "fleet")
    wait_for(fleet.hosts.host(marker_host).srv / marker, process)
    return process


def test_sigint_mid_prepare_removes_the_release_everywhere_and_unlocks(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    before = deployed(fleet)
    slow_prepare(fleet, 30)
    process = start_deploy(fleet, 3, "preparing")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)

    assert time.monotonic() - started < 10
    assert process.returncode == 1, out + err
    assert "interrupted" in out
    assert fleet.currents() == before
    for index in (1, 2, 3):
        assert fleet.release_dirs(index) == {before["h1"]}
        assert not fleet.locked(index)


def test_sigint_mid_switch_puts_every_host_back_and_a_second_one_waits(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    # the first restart hangs (until interrupted); the restart of the put-back takes 2 s
    fleet.edit_pipeline(
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        'switch(restart="echo {release} >> {shared_path}/restarts; '
        "if [ -e /srv/slow ]; then rm /srv/slow; touch /srv/switching; sleep 30; "
        'elif [ -e /srv/slow-back ]; then rm /srv/slow-back; touch /srv/back; sleep 2; fi")',
    )
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    before = fleet.currents()
    for host in fleet.hosts.hosts:
        (host.srv / "slow").touch()
        (host.srv / "slow-back").touch()
    process = start_deploy(fleet, 2, "switching")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    back = fleet.hosts.host(2).srv / "back"
    while not back.exists() and time.monotonic() < started + 20:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # during the clean-up: said, not obeyed
    out, err = process.communicate(timeout=60)

    assert time.monotonic() - started < 15
    assert process.returncode == 1, out + err
    assert "still putting the fleet back" in err
    assert fleet.currents() == before
    for index in (1, 2, 3):
        restarts = (fleet.hosts.host(index).srv / "demo/shared/restarts").read_text().split()
        assert restarts[-1] == before["h1"]
        assert not fleet.locked(index)


def test_a_full_disk_on_one_host_fails_before_any_upload(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.hosts.small_disk(2, "demo", "1m")
    (fleet.project.root / "app" / "big.bin").write_bytes(os.urandom(2_000_000))
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "h2" in result.stdout and "not enough free space in /srv/demo" in result.stdout
    assert fleet.currents() == {"h1": None, "h2": None, "h3": None}
    for index in (1, 2, 3):
        assert fleet.release_dirs(index) == set()
        assert not fleet.locked(index)
    uploads = fleet.hosts.host(2).srv / "demo" / ".deploylib" / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def last_log_entry(fleet: Fleet, index: int) -> dict[str, object]:
    log = fleet.hosts.host(index).srv / "demo" / ".deploylib" / "releases.jsonl"
    entry = json.loads(log.read_text().splitlines()[-1])
    assert isinstance(entry, dict)
    return entry


def test_sshd_dead_before_the_deploy_changes_nothing(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    before = fleet.currents()
    fleet.hosts.kill_sshd(2)
    started = time.monotonic()
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stdout + result.stderr
    assert "h2" in result.stdout and "refused" in result.stdout
    assert "nothing was changed" in result.stdout
    assert fleet.currents() == before
    for index in (1, 3):
        assert not fleet.locked(index)
        assert last_log_entry(fleet, index)["outcome"] == "success"  # nothing new recorded
        assert fleet.release_dirs(index) == {before["h1"]}


def test_sshd_killed_during_prepare(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    before = deployed(fleet)
    slow_prepare(fleet, 3)
    process = start_deploy(fleet, 2, "preparing")
    started = time.monotonic()
    fleet.hosts.kill_sshd(2)
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 20
    assert process.returncode == 1, out + err
    assert "h2" in out and "no target was switched" in out
    assert fleet.currents() == before
    for index in (1, 3):
        assert fleet.release_dirs(index) == {before["h1"]}
        assert not fleet.locked(index)
        assert last_log_entry(fleet, index)["outcome"] == "failed"
    assert fleet.locked(2)  # it could not be unlocked: status will show it, unlock removes it


def test_link_cut_after_some_hosts_switched_says_who_is_on_what(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.edit_pipeline(
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        'switch(restart="echo {release} >> {shared_path}/restarts; '
        'if [ -e /srv/slow ]; then rm /srv/slow; touch /srv/switching; sleep 10; fi")',
    )
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    before = fleet.currents()
    (fleet.hosts.host(3).srv / "slow").touch()
    process = start_deploy(fleet, 3, "switching")
    started = time.monotonic()
    fleet.hosts.cut(3)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - started
    fleet.hosts.mend(3)

    assert took < 20, took
    assert process.returncode == 4, out + err
    assert fleet.current(1) == before["h1"] and fleet.current(2) == before["h2"]
    new = fleet.current(3)
    assert new is not None and new != before["h3"]  # h3 switched before its link was cut
    # the put-back's own switch got no answer either: either release is possible, and said
    assert f"h3: {before['h3']} or {new} (unreachable while switching)" in out
    assert f"h1: {before['h1']}" in out
    for index in (1, 2):
        assert not fleet.locked(index)
        assert last_log_entry(fleet, index)["outcome"] == "rolled_back"


def test_rollback_with_one_host_unreachable_exits_4_listing_every_host(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    first = fleet.currents()["h1"]
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    second = fleet.currents()["h1"]
    fleet.hosts.cut(2)
    started = time.monotonic()
    result = fleet.project.cli("rollback", "--env", "fleet")
    took = time.monotonic() - started
    fleet.hosts.mend(2)

    assert took < 40, took
    assert result.returncode == 4, result.stdout + result.stderr
    assert fleet.current(1) == first and fleet.current(3) == first
    assert fleet.current(2) == second
    assert f"h1: {first}" in result.stdout and "h2: unknown (unreachable" in result.stdout
    for index in (1, 3):
        assert not fleet.locked(index)
        entry = last_log_entry(fleet, index)
        assert (entry["event"], entry["release"]) == ("rollback", first)


@pytest.mark.parametrize(
    "fakes",
    [
        # h2's OpenSSL reports another digest, as a corrupted copy would
        {"openssl": 'cat > /dev/null; echo "0000000000000000 *stdin"'},
        # h2 has no working OpenSSL: coreutils' sha256sum is read, and reports another digest
        {"openssl": "exit 127", "sha256sum": 'cat > /dev/null; echo "0000000000000000  -"'},
    ],
    ids=["openssl", "sha256sum"],
)
def test_an_upload_that_arrives_changed_is_refused(
    fleet_of: FleetOf, fakes: dict[str, str]
) -> None:
    fleet = fleet_of(2)
    for name, script in fakes.items():
        fleet.hosts.fake_command(2, name, script)
    result = fleet.project.cli("deploy", "--env", "fleet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "h2" in result.stdout and "sha256 mismatch" in result.stdout
    assert fleet.currents() == {"h1": None, "h2": None}
    for index in (1, 2):
        assert fleet.release_dirs(index) == set()
        assert not fleet.locked(index)


def test_status_shows_every_host_even_when_one_is_down(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    fleet.hosts.kill_sshd(2)
    result = fleet.project.cli("status", "--env", "fleet", "--json")
    assert result.returncode == 1
    rows = {row["host"]: row for row in json.loads(result.stdout)}
    assert rows["h1"]["current"] == fleet.current(1) and rows["h1"]["error"] is None
    assert rows["h2"]["current"] is None and "refused" in rows["h2"]["error"]
    table = fleet.project.cli("status", "--env", "fleet")
    current = fleet.current(1)
    assert current is not None  # h1 is still on the release deployed above
    assert "unreachable" in table.stdout and current in table.stdout


def test_rolling_deploy_stops_at_the_failing_batch(fleet_of: FleetOf) -> None:
    fleet = fleet_of(3)
    fleet.configure(extra_ssh='[environments.fleet.strategy]\nkind = "rolling"\nbatch = 1\n')
    before = deploy_then_break(fleet, 2)

    result = fleet.project.cli("deploy", "--env", "fleet")

    assert result.returncode == 1, result.stdout + result.stderr
    assert fleet.currents() == before
    restarts = {
        h.name: (h.srv / "demo/shared/restarts").read_text().split() for h in fleet.hosts.hosts
    }
    assert len(set(restarts["h1"])) == 2 and len(set(restarts["h2"])) == 2  # new, then old
    assert restarts["h3"] == [before["h3"]]  # the third batch never started


def test_a_fleet_deployed_in_parts_is_rolled_back_in_the_same_parts(fleet_of: FleetOf) -> None:
    """two to all, three to h1 only, four to all: a rollback undoes four, each host back to what
    it ran before it (h1 on three, the others on two), and says the fleet is split; the next
    rollback undoes three on h1; --to puts everyone on one release."""
    fleet = fleet_of(3)
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0
    two = fleet.currents()
    assert fleet.project.cli("deploy", "--env", "fleet", "--hosts", "h1").returncode == 0
    three = fleet.currents()["h1"]
    assert fleet.project.cli("deploy", "--env", "fleet").returncode == 0

    undo = fleet.project.cli("rollback", "--env", "fleet")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert fleet.currents() == {"h1": three, "h2": two["h2"], "h3": two["h3"]}
    assert "different releases" in undo.stdout
    rows = json.loads(fleet.project.cli("status", "--env", "fleet", "--json").stdout)
    assert {row["host"]: row["current"] for row in rows} == fleet.currents()
    assert {row["host"]: (row["consistent"], row["differs"]) for row in rows} == {
        "h1": (False, True),
        "h2": (False, False),
        "h3": (False, False),
    }
    table = fleet.project.cli("status", "--env", "fleet")
    assert table.returncode == 0  # a split fleet is shown, not an error
    assert f"the fleet is split: most hosts run {two['h2']}; h1 ({three}) differ" in table.stdout

    again = fleet.project.cli("rollback", "--env", "fleet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert fleet.currents() == two
    rows = json.loads(fleet.project.cli("status", "--env", "fleet", "--json").stdout)
    assert all(row["consistent"] and not row["differs"] for row in rows)
    assert "split" not in fleet.project.cli("status", "--env", "fleet").stdout

    everyone = fleet.project.cli("rollback", "--env", "fleet", "--to", three or "")
    assert everyone.returncode == 1 and "h2: release" in everyone.stdout, everyone.stdout
    assert fleet.currents() == two  # three is only on h1: refused, nothing changed


def test_rolling_switches_at_most_a_batch_at_once_and_leaves_a_sick_host_behind(
    fleet_of: FleetOf, tmp_path: Path
) -> None:
    """Five hosts, two at a time, one failure allowed: h3 fails its checks and is put back
    alone, the others go on; at no moment do more than two hosts stand between their switch and
    their passed checks (read from the events); the fleet ends split, exit 4."""
    fleet = fleet_of(5)
    fleet.configure(
        extra_ssh='[environments.fleet.strategy]\nkind = "rolling"\nbatch = 2\nmax_fail = 1\n'
    )
    before = deploy_then_break(fleet, 3)
    events = tmp_path / "events.jsonl"

    result = fleet.project.cli("deploy", "--env", "fleet", "--events", str(events))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "deployed" in result.stdout and "4 of 5" in result.stdout
    after = fleet.currents()
    assert after["h3"] == before["h3"]
    new = {after[h] for h in ("h1", "h2", "h4", "h5")}
    assert len(new) == 1 and new != {before["h1"]}
    assert fleet.release_dirs(3) == {before["h3"]}  # the unwanted release is gone there
    log = (fleet.hosts.host(3).srv / "demo/.deploylib/releases.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["outcome"] == "rolled_back"
    assert not any(fleet.locked(i) for i in range(1, 6))

    records = [json.loads(line) for line in events.read_text().splitlines()]
    switching: set[str] = set()
    most = 0
    for record in records:
        host, step, kind = record.get("host"), record.get("step"), record["event"]
        if kind == "step.start" and step == "switch":
            switching.add(host)
            most = max(most, len(switching))
        elif (kind == "step.ok" and step == "verify") or kind == "revert":
            switching.discard(host)
    assert most == 2
    order = [r["host"] for r in records if r["event"] == "step.start" and r.get("step") == "switch"]
    assert order[:2] == ["h1", "h2"] and sorted(order) == ["h1", "h2", "h3", "h4", "h5"]


def test_verbose_streams_every_hosts_output_over_ssh_with_host_and_step(
    fleet_of: FleetOf,
) -> None:
    fleet = fleet_of(2)
    fleet.project.write(".env", "TOKEN=ssh-stream-secret-1\n")
    fleet.edit_pipeline(
        'run("test ! -e FAIL_PREPARE", cwd="{release_path}")',
        'run("echo on {host}; echo token $TOKEN >&2", name="talk")',
    )
    result = fleet.project.cli("deploy", "--env", "fleet", "--verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("h1", "h2"):
        assert f"{name} talk | on {name}" in result.stdout
        assert f"{name} talk | token ***" in result.stdout
    assert "ssh-stream-secret-1" not in result.stdout + result.stderr
