"""Blue-green behind a real nginx, with real gunicorn on two slots, under a bounded load loop.

The project deploys to this machine (``hosts = ["local"]``). Each release runs gunicorn on a
slot's port (``{port}``), its pid file named after the slot (``{slot}``); nginx on 127.0.0.1
takes its upstream servers from the file deploylib rewrites. Requests go through nginx the whole
time, a fresh connection each, and none may fail: not across deploys, not across rollbacks (a
proxy switch to the slot still running the release), not when a release never becomes healthy
(the old slot keeps serving), not when the previous slot died (it is started again first)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_cli
from tests.testbed.load import Load
from tests.testbed.slots import (
    Slots,
    closed_within,
    event_of,
    slots_behind_nginx,
    upstream_servers,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def slots(tmp_path: Path) -> Iterator[Slots]:
    with slots_behind_nginx(tmp_path) as made:
        yield made


def test_deploys_and_rollbacks_switch_slots_without_a_failed_request(slots: Slots) -> None:
    first = slots.cli("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    r1 = slots.project.current()
    assert r1 and slots.serves(r1)
    assert slots.record()["live"] == "blue"
    assert upstream_servers(slots.proxy) == [f"server 127.0.0.1:{slots.ports['blue']};"]

    with Load(slots.proxy.port, max_requests=500_000, max_seconds=120) as load:
        load.wait_for_answers(10)
        second = slots.cli("deploy")
        assert second.returncode == 0, second.stdout + second.stderr
        r2 = slots.project.current()
        assert r2 != r1 and slots.serves(r2)
        assert upstream_servers(slots.proxy) == [f"server 127.0.0.1:{slots.ports['green']};"]
        blue_pid = slots.pid("blue")
        assert blue_pid is not None and Path(f"/proc/{blue_pid}").exists()  # idle, running
        load.wait_for_answers(10)

        # rollback: a proxy switch back to blue, which still runs r1: nothing restarts
        started = time.monotonic()
        back = slots.cli("rollback")
        took = time.monotonic() - started
        assert back.returncode == 0, back.stdout + back.stderr
        assert slots.serves(r1) and slots.pid("blue") == blue_pid
        print(f"rollback by proxy switch: {took:.2f} s (whole program)")
        load.wait_for_answers(10)

        # the next deploy takes green (r2 idle there), waits out its drain, starts r3
        third = slots.cli("deploy")
        assert third.returncode == 0, third.stdout + third.stderr
        r3 = slots.project.current()
        assert slots.serves(r3) and slots.record()["live"] == "green"
        load.wait_for_answers(10)

        # blue (r1, idle) dies, as in a reboot: rollback starts it again, checks it, switches
        dead = slots.pid("blue")
        assert dead is not None
        os.killpg(os.getpgid(dead), signal.SIGKILL)  # the master and its workers
        closed_within(slots.ports["blue"], 10)
        rolled = slots.cli("rollback")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "does not answer" in rolled.stdout + rolled.stderr
        assert slots.serves(r1) and slots.pid("blue") not in (None, dead)
        load.wait_for_answers(10)

        # a release that never becomes healthy: started on green, never takes traffic
        slots.project.write("app/BROKEN", "")
        broken = slots.cli("deploy")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert slots.serves(r1) and slots.project.current() == r1
        record = slots.record()
        assert record["live"] == "blue"
        assert record["slots"]["green"]["release"] is None  # type: ignore[index]
        assert slots.pid("green") is None  # the unhealthy release was stopped
        load.wait_for_answers(10)

    assert load.failures == [], load.failures[:5]
    assert {f"release {r}" for r in (r1, r2, r3)} <= set(load.bodies)
    assert len(load.bodies) == 3  # never the broken release
    print(f"{sum(load.bodies.values())} requests through nginx, 0 failed")

    status = slots.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [row] = json.loads(status.stdout)
    assert row["slots"]["live"] == "blue"
    assert row["slots"]["slots"]["blue"]["release"] == r1


def test_a_config_nginx_refuses_leaves_the_proxy_and_the_fleet_as_they_were(slots: Slots) -> None:
    assert slots.cli("deploy").returncode == 0
    r1 = slots.project.current()
    before = slots.proxy.upstream.read_text()
    slots.proxy.upstream.parent.joinpath("extra.conf").write_text("this is not nginx;\n")
    conf = slots.proxy.conf.read_text()
    slots.proxy.conf.write_text(
        conf.replace("events {", f"include {slots.proxy.prefix}/upstream/extra.conf;\nevents {{", 1)
    )

    refused = slots.cli("deploy")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the proxy refused the new upstream file" in refused.stdout + refused.stderr
    assert slots.proxy.upstream.read_text() == before  # put back as it was
    assert slots.project.current() == r1 and slots.serves(r1)
    assert slots.record()["live"] == "blue"


def test_a_weighted_canary_shares_requests_bakes_then_promotes_or_goes_back(
    slots: Slots, tmp_path: Path
) -> None:
    slots.configure("weight = 50\nbake = 2\nwait = 0.2\n")
    assert slots.cli("deploy").returncode == 0
    r1 = slots.project.current()
    blue, green = slots.ports["blue"], slots.ports["green"]

    with Load(slots.proxy.port, max_requests=500_000, max_seconds=120) as load:
        load.wait_for_answers(10)
        events = tmp_path / "promote.jsonl"
        deploy = start_cli(slots.project.root, "deploy", "--env", "dev", "--events", str(events))
        event_of(events, deploy, "bake")
        # while it bakes: half of the requests to each slot, by the upstream weights
        assert upstream_servers(slots.proxy) == [
            f"server 127.0.0.1:{blue} weight=50;",
            f"server 127.0.0.1:{green} weight=50;",
        ]
        release = str(event_of(events, deploy, "deploy.start")["release"])
        seen_before = load.bodies[f"release {release}"]
        load.wait_for_answers(50)
        assert load.bodies[f"release {release}"] > seen_before  # the canary takes requests
        assert deploy.wait(timeout=60) == 0, deploy.communicate()
        r2 = slots.project.current()
        assert r2 == release and slots.serves(r2)
        assert upstream_servers(slots.proxy) == [f"server 127.0.0.1:{green};"]
        bakes = [json.loads(line) for line in events.read_text().splitlines()]
        assert any(e["event"] == "bake" and "rounds" in str(e.get("message")) for e in bakes)

        # the next canary sickens while it bakes: the proxy goes back to green, whole
        events = tmp_path / "abort.jsonl"
        deploy = start_cli(slots.project.root, "deploy", "--env", "dev", "--events", str(events))
        event_of(events, deploy, "bake")
        sick = str(event_of(events, deploy, "deploy.start")["release"])
        (slots.project.target / "shared" / f"SICK-{sick}").touch()
        assert deploy.wait(timeout=60) == 1
        out, err = deploy.communicate()
        assert "every target is back on the release it had" in out + err
        assert upstream_servers(slots.proxy) == [f"server 127.0.0.1:{green};"]
        assert slots.project.current() == r2 and slots.serves(r2)
        assert slots.pid("blue") is None  # the sick canary was stopped
        load.wait_for_answers(10)

    assert load.failures == [], load.failures[:5]
    assert set(load.bodies) == {f"release {r}" for r in (r1, r2, sick)}
