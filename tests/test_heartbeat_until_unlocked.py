"""Specifies that a deploy's locks keep their heartbeat until each is released: a host slow to
finish (its record, cleanup and unlock) never leaves the others' locks without one, which would
make them look stale to another deploy and to ``unlock``; and that a lock whose deploy runs on
this machine is never judged stale, however old its heartbeat."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from deploylib import Pipeline, build, push, run, switch
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

    fleet["h1"].respond(slow_finish)
    for name, stamps in beats.items():
        _stamped(fleet, name, stamps)
    names = ["h1", "h2", "h3"]
    runner = _runner(fleet, names, PIPELINE, parallel=1)  # one host finishes after the other
    env = environment(hosts=[Host(n, n) for n in names])
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


def _runner(fleet: FakeFleet, names: list[str], pipeline: Pipeline, **options: Any) -> Runner:
    env = environment(hosts=[Host(n, n) for n in names])
    return Runner(
        env,
        pipeline,
        backend_for=fleet.backend_for,
        controller=fleet.controller,
        reporter=RecordingReporter(),
        revision="abc1234",
        clock=lambda: FIXED_TIME,
        workdir=Path(WORKDIR),
        lock_token=TOKEN,
        heartbeat=BEAT,
        **options,
    )


def _stamped(fleet: FakeFleet, name: str, stamps: list[float]) -> None:
    def seen(op: Operation) -> Result | None:
        if op.description == "heartbeat":
            stamps.append(time.monotonic())
        return None

    fleet[name].respond(seen)


def _slow_run(fleet: FakeFleet, name: str, seconds: float) -> None:
    def slow(op: Operation) -> Result | None:
        if "slow-step" in op.line:
            time.sleep(seconds)
        return None

    fleet[name].respond(slow)


SLOW_PIPELINE = Pipeline(build("make {artifact}"), push(), run("echo slow-step"), switch())


def test_a_host_whose_touch_hangs_holds_up_no_other_host_s_heartbeat() -> None:
    """With parallel = 1 too: the heartbeat has a worker per host, whatever ``parallel`` is."""
    fleet = FakeFleet()

    def hangs(op: Operation) -> Result | None:
        if op.description == "heartbeat":
            time.sleep(1.0)
        return None

    fleet["h1"].respond(hangs)
    stamps: list[float] = []
    _stamped(fleet, "h2", stamps)
    _slow_run(fleet, "h2", 1.5)
    outcome = _runner(fleet, ["h1", "h2"], SLOW_PIPELINE, parallel=1).deploy(
        environment(hosts=[Host("h1", "h1"), Host("h2", "h2")]).hosts
    )
    assert outcome.release
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 10 and max(gaps) < 0.5, (len(stamps), max(gaps, default=0))


def test_a_lock_taken_on_a_second_try_is_beaten_like_the_others(monkeypatch: Any) -> None:
    """``--lock-wait``: the first try found h2 held and gave h1's lock back; the second try
    took both, and both are beaten for the rest of the deploy."""
    from deploylib import fleet_lock
    from deploylib.remote.lock import LOCK_HELD_EXIT
    from deploylib.remote.reading import render_state

    monkeypatch.setattr(fleet_lock, "LOCK_POLL", 0.1)
    fleet = FakeFleet()
    tries: list[int] = []

    def held_once(op: Operation) -> Result | None:
        if op.description == "lock":
            tries.append(1)
            if len(tries) == 1:
                return Result(LOCK_HELD_EXIT, render_state(), stderr="held")
        return None

    fleet["h2"].respond(held_once)
    stamps: list[float] = []
    _stamped(fleet, "h1", stamps)
    _slow_run(fleet, "h1", 1.0)
    hosts = environment(hosts=[Host("h1", "h1"), Host("h2", "h2")]).hosts
    outcome = _runner(fleet, ["h1", "h2"], SLOW_PIPELINE, parallel=2, lock_wait=5).deploy(hosts)
    assert outcome.release and len(tries) == 2
    assert len(stamps) >= 5, len(stamps)


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


def test_a_lock_this_very_process_left_earlier_is_judged_by_its_heartbeat() -> None:
    """A program that runs deploys in process, one after another: a lock an earlier run of it
    failed to release is stale once its heartbeat stopped, as any other; another process's
    running deploy never is."""
    import socket

    from deploylib import locks

    mine = locks.new_owner("r1", "earlier", 1.0)
    assert locks.stale_reason(mine, age=3600) is not None
    assert locks.stale_reason(mine, age=1) is None
    other = subprocess.Popen(["sleep", "30"])
    try:
        theirs = {**mine, "pid": other.pid, "host": socket.gethostname()}
        theirs.update(locks.process_identity(other.pid))
        assert locks.stale_reason(theirs, age=3600) is None
    finally:
        other.kill()
        other.wait()
    assert locks.stale_reason(theirs, age=3600) is not None  # gone now
