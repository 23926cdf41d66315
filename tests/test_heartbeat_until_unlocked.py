"""Specifies that a deploy's locks keep their heartbeat until each is released: a host slow to
finish (its record, cleanup and unlock) never leaves the others' locks without one, which would
make them look stale to another deploy and to ``unlock``; and that a lock whose deploy runs on
this machine is never judged stale, however old its heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploylib import Pipeline, build, push, switch
from deploylib.commands import Operation, Result
from deploylib.hosts import Host
from deploylib.reporting import RecordingReporter
from deploylib.runner import Runner
from deploylib.testing import FIXED_TIME, TOKEN, WORKDIR, FakeFleet, environment
from tests.conftest import Project

PIPELINE = Pipeline(build("make {artifact}"), push(), switch())
SLOW = 0.8  # h1's finish, in seconds
BEAT = 0.05


def test_the_others_locks_are_beaten_while_one_host_is_slow_to_finish() -> None:
    fleet = FakeFleet()
    window: list[float] = []
    beats: dict[str, list[float]] = {"h2": [], "h3": []}

    def slow_finish(op: Operation) -> Result | None:
        if op.description == "record":
            window.append(time.monotonic())
            time.sleep(SLOW)
            window.append(time.monotonic())
        return None

    def beat_of(name: str) -> Callable[[Operation], Result | None]:
        def seen(op: Operation) -> Result | None:
            if op.description == "heartbeat":
                beats[name].append(time.monotonic())
            return None

        return seen

    fleet["h1"].respond(slow_finish)
    for name in beats:
        fleet[name].respond(beat_of(name))
    env = environment(hosts=[Host(n, n) for n in ("h1", "h2", "h3")])
    runner = Runner(
        env,
        PIPELINE,
        backend_for=fleet.backend_for,
        controller=fleet.controller,
        reporter=RecordingReporter(),
        revision="abc1234",
        clock=lambda: FIXED_TIME,
        workdir=Path(WORKDIR),
        lock_token=TOKEN,
        parallel=1,  # one host finishes after the other
        heartbeat=BEAT,
    )
    outcome = runner.deploy(env.hosts)

    assert outcome.release
    start, end = window
    for name in beats:
        during = [t for t in beats[name] if start < t < end]
        assert len(during) >= 3, (name, len(during))
        # none after its own finish began: a touch then would find the lock gone
        descriptions = [op.description for op in fleet[name].operations]
        record = descriptions.index("record")
        assert "heartbeat" not in descriptions[record:]
    assert not any(t.lock_lost for t in runner.targets)


def test_a_lock_whose_deploy_runs_here_is_never_stale_however_old_its_heartbeat(
    project: Project,
) -> None:
    import socket

    from deploylib import locks

    alive = subprocess.Popen(["sleep", "60"])
    try:
        owner = {
            "user": "ci",
            "host": socket.gethostname(),
            "pid": alive.pid,
            "started_at": "an hour ago",
            "heartbeat_interval": 1,
            "token": "0123456789abcdef",
            **locks.process_identity(alive.pid),
        }
        lock = project.hold_lock(owner)
        beat = lock / "heartbeat"
        beat.touch()
        an_hour_ago = time.time() - 3600
        os.utime(beat, (an_hour_ago, an_hour_ago))
        os.utime(lock / "owner.json", (an_hour_ago, an_hour_ago))

        unlock = project.cli("unlock", "--env", "dev")
        assert unlock.returncode == 3, unlock.stdout + unlock.stderr
        assert "STALE" not in unlock.stdout + unlock.stderr
        assert lock.is_dir()
        status = project.cli("status", "--env", "dev", "--json")
        assert status.returncode == 0 and "STALE" not in status.stdout
        assert json.loads((lock / "owner.json").read_text())["pid"] == alive.pid
    finally:
        alive.kill()
        alive.wait()
    # its deploy gone: now it is stale, and unlock removes it without --force
    unlock = project.cli("unlock", "--env", "dev")
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    assert not lock.exists()
