"""The runner against fake targets: the exact operations of a deploy, failure and revert."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deploylib import (
    Command,
    DeployFailed,
    FleetInconsistent,
    LockHeld,
    LockLost,
    Pipeline,
    Secret,
    build,
    command,
    envfile,
    http,
    migrate,
    push,
    records,
    rollback,
    run,
    step,
    switch,
    verify,
)
from deploylib.backends.local import LocalBackend
from deploylib.commands import Operation, Probe, Result
from deploylib.fleet import Target
from deploylib.hosts import Host
from deploylib.remote import lock as remote_lock
from deploylib.remote import release as remote_release
from deploylib.remote.layout import Layout
from deploylib.remote.lock import LOCK_HELD_EXIT
from deploylib.remote.reading import render_state
from deploylib.remote.state import TargetState
from deploylib.reporting.recording import RecordingReporter
from deploylib.run_state import Run
from deploylib.testing import (
    FIXED_TIME,
    TOKEN,
    WORKDIR,
    FakeFleet,
    deploy_with_fakes,
    environment,
)

R = "20260102T030405Z-abc1234"
OLD = "20251231T000000Z-0ld0000"
ARTIFACT = f"{WORKDIR}/app-{R}.tar.gz"


def web_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        build("tar -czf {artifact} ."),
        push(),
        run("pip install -r requirements.txt", cwd="{release_path}"),
        migrate("./manage.py migrate"),
        switch(restart="kill -HUP $(cat {shared_path}/app.pid)"),
        verify(http("http://{host_address}:8000/health", contains="{release}"), attempts=2, wait=0),
        **kwargs,  # type: ignore[arg-type]
    )


def short_pipeline() -> Pipeline:
    """Nothing between the push and the switch."""
    return Pipeline(
        build("tar -czf {artifact} ."),
        push(),
        switch(restart="kill -HUP $(cat {shared_path}/app.pid)"),
        verify(http("http://{host_address}:8000/health", contains="{release}"), attempts=2, wait=0),
    )


def state_with_previous(op: Operation) -> Result | None:
    """Answer the lock command as a target that runs OLD."""
    if isinstance(op, Command) and op.description == "lock":
        entry = {
            "event": "deploy",
            "outcome": "success",
            "release": OLD,
            "revision": "0ld",
            "previous": None,
            "current": OLD,
        }
        return Result(0, render_state(current=OLD, releases=[OLD], log=[entry]))
    return None


LAYOUT = Layout("/srv/app")


def test_deploy_runs_exact_operations() -> None:
    env = environment(shared_dirs=["log"], shared_files=[".env"])
    fleet = FakeFleet()
    outcome, report = deploy_with_fakes(env, web_pipeline(), fleet)

    assert not isinstance(outcome, Exception)
    assert outcome.placement == {"local": R}
    assert fleet.controller.lines == [
        f"cd /project && tar -czf {ARTIFACT} .",
        f"test -s {ARTIFACT}",
    ]
    rel = f"/srv/app/releases/{R}"
    ops = fleet["local"].operations
    assert [op.description for op in ops] == [
        "lock",
        "push",  # prepare, the artifact streamed in and checked, unpack: one command
        "run",
        "migrate",
        "check lock",
        f"switch to {R}",
        "restart",
        "check",
        "record",  # the release log, then cleanup, then the unlock: one command
    ]
    lines = fleet["local"].lines
    assert lines[1:] == [
        remote_release.push_command(
            LAYOUT,
            R,
            "abc1234",
            ["log"],
            [".env"],
            artifact=ARTIFACT,
            digest="",
            variables={},
            token=TOKEN,
        ).line,
        f"cd {rel} && pip install -r requirements.txt",
        f"cd {rel} && ./manage.py migrate",
        remote_lock.check_lock_command(LAYOUT, TOKEN).line,
        remote_release.switch_command(LAYOUT, R, TOKEN).line,
        "cd /srv/app/current && kill -HUP $(cat /srv/app/shared/app.pid)",
        f"GET http://127.0.0.1:8000/health expect 200 containing '{R}'",
        ops[-1].line,
    ]
    # every command on the target after the lock runs only while the lock is this deploy's
    for op in ops[1:]:
        if isinstance(op, Command):
            assert op.guard == remote_lock.lock_guard(LAYOUT, TOKEN), op.description
    record = ops[-1]
    assert isinstance(record, Command) and isinstance(record.stdin, bytes)
    assert remote_lock.unlock_command(LAYOUT, TOKEN).script in record.script
    entry = json.loads(record.stdin)
    assert (entry["event"], entry["outcome"], entry["release"], entry["current"]) == (
        "deploy",
        "success",
        R,
        R,
    )
    assert report.kinds()[0] == "deploy.start" and report.kinds()[-1] == "deploy.ok"


def test_placeholder_values_are_shell_quoted() -> None:
    env = environment(deploy_to="/srv/my app", app="app")
    fleet = FakeFleet()
    deploy_with_fakes(env, Pipeline(run("ls {deploy_to} {release_path}")), fleet)
    assert f"ls '/srv/my app' '/srv/my app/releases/{R}'" in fleet["local"].lines


def test_prepare_failure_switches_nobody_and_removes_the_release() -> None:
    env = environment()
    fleet = FakeFleet()
    fleet["local"].fail_when("pip install", stderr="no such requirement")
    error, report = deploy_with_fakes(env, web_pipeline(), fleet)

    assert isinstance(error, DeployFailed) and error.exit_code == 1
    assert "no such requirement" in str(error)
    lines = fleet["local"].lines
    assert not any(op.description.startswith("switch") for op in fleet["local"].operations)
    assert not any("migrate" in line for line in lines)
    assert lines[-3:] == [
        remote_release.remove_release_command(LAYOUT, [R], TOKEN).line,
        fleet["local"].operations[-2].line,
        remote_lock.unlock_command(LAYOUT, TOKEN).line,
    ]
    assert fleet["local"].operations[-2].description == "record"
    entry = json.loads(fleet["local"].operations[-2].stdin)  # type: ignore[union-attr,arg-type]
    assert entry["outcome"] == "failed" and entry["current"] is None
    assert "step.failed" in report.kinds()


def test_verify_failure_switches_back_restarts_and_reverifies_the_old_release() -> None:
    env = environment()
    fleet = FakeFleet()
    target = fleet["local"]
    target.respond(state_with_previous)

    def new_release_unhealthy(op: Operation) -> Result | None:
        if isinstance(op, Probe) and R in (op.contains or ""):
            return Result(1, stderr="body lacks release")
        return None

    target.respond(new_release_unhealthy)
    error, _ = deploy_with_fakes(env, web_pipeline(), fleet)

    assert isinstance(error, DeployFailed) and error.placement == {"local": OLD}
    lines = target.lines
    # putting back needs the old release's directory, not more
    switch_back = lines.index(
        remote_release.switch_command(LAYOUT, OLD, TOKEN, complete=False).line
    )
    assert (
        lines[switch_back + 1] == "cd /srv/app/current && kill -HUP $(cat /srv/app/shared/app.pid)"
    )
    assert (
        lines[switch_back + 2] == f"GET http://127.0.0.1:8000/health expect 200 containing '{OLD}'"
    )
    assert lines.count(f"GET http://127.0.0.1:8000/health expect 200 containing '{R}'") == 2
    assert remote_release.remove_release_command(LAYOUT, [R], TOKEN).line in lines
    entry = json.loads(target.operations[-2].stdin)  # type: ignore[union-attr,arg-type]
    assert (entry["outcome"], entry["current"], entry["previous"]) == ("rolled_back", OLD, OLD)


def test_failed_switch_back_is_reported_as_inconsistent() -> None:
    env = environment(hosts=["a", "b"])
    fleet = FakeFleet()
    for name in ("a", "b"):
        fleet[name].respond(state_with_previous)
        fleet[name].respond(
            lambda op: Result(1) if isinstance(op, Probe) and R in (op.contains or "") else None
        )
    fleet["b"].fail_when(f"ln -sfn releases/{OLD} ", stderr="disk gone")
    error, _ = deploy_with_fakes(env, web_pipeline(), fleet)
    assert isinstance(error, FleetInconsistent) and error.exit_code == 4
    assert error.placement == {"a": OLD, "b": R}
    assert "putting back failed on b" in str(error)


def test_old_release_failing_its_checks_too_is_consistent_but_said() -> None:
    fleet = FakeFleet()
    target = fleet["local"]
    target.respond(state_with_previous)
    target.respond(lambda op: Result(1, stderr="down") if isinstance(op, Probe) else None)
    error, _ = deploy_with_fakes(environment(), web_pipeline(), fleet)
    assert isinstance(error, DeployFailed) and error.exit_code == 1
    assert error.placement == {"local": OLD}
    assert "fails its checks too on local" in str(error)


def test_first_deploy_that_fails_verify_leaves_no_current() -> None:
    env = environment()
    fleet = FakeFleet()
    fleet["local"].respond(lambda op: Result(1) if isinstance(op, Probe) else None)
    error, _ = deploy_with_fakes(env, web_pipeline(), fleet)
    assert isinstance(error, DeployFailed) and error.placement == {"local": None}
    assert remote_release.switch_command(LAYOUT, None, TOKEN).line in fleet["local"].lines


def test_lock_held_touches_nothing_and_names_the_owner() -> None:
    env = environment()
    fleet = FakeFleet()
    owner = {"user": "alice", "host": "laptop", "pid": 42, "started_at": "2026-01-01T00:00:00"}

    def held(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.description == "lock":
            return Result(LOCK_HELD_EXIT, render_state(lock_owner=owner))
        return None

    fleet["local"].respond(held)
    error, _ = deploy_with_fakes(env, web_pipeline(), fleet)
    assert isinstance(error, LockHeld) and error.exit_code == 3
    assert "alice@laptop" in str(error) and "2026-01-01T00:00:00" in str(error)
    assert len(fleet["local"].operations) == 1  # the lock attempt, nothing else (not even unlock)


def test_lock_is_all_or_nothing_across_hosts() -> None:
    env = environment(hosts=["a", "b", "c"])
    fleet = FakeFleet()
    fleet["b"].respond(
        lambda op: (
            Result(LOCK_HELD_EXIT, render_state(lock_owner={}))
            if isinstance(op, Command) and op.description == "lock"
            else None
        )
    )
    error, _ = deploy_with_fakes(env, web_pipeline(), fleet)
    assert isinstance(error, LockHeld)
    for name in ("a", "c"):
        assert [op.description for op in fleet[name].operations] == ["lock", "unlock"]


def test_migrate_runs_once_on_the_db_host_and_run_on_every_host() -> None:
    env = environment(
        hosts=[
            Host("web1", "web1", roles=("web",)),
            Host("db1", "db1", roles=("db",)),
            Host("web2", "web2", roles=("web",)),
        ]
    )
    fleet = FakeFleet()
    deploy_with_fakes(env, web_pipeline(), fleet)
    for name in ("web1", "db1", "web2"):
        assert any("pip install" in line for line in fleet[name].lines)
        assert (f"cd /srv/app/releases/{R} && ./manage.py migrate" in fleet[name].lines) == (
            name == "db1"
        )


def test_migrate_falls_back_to_the_first_host_and_roles_narrow_run() -> None:
    env = environment(hosts=[Host("a", "a", roles=("web",)), Host("b", "b", roles=("worker",))])
    fleet = FakeFleet()
    deploy_with_fakes(
        env, Pipeline(migrate("migrate-db"), run("restart-worker", roles=["worker"])), fleet
    )
    assert [line for line in fleet["a"].lines if "migrate-db" in line]
    assert not [line for line in fleet["b"].lines if "migrate-db" in line]
    assert [line for line in fleet["b"].lines if line == "restart-worker"]
    assert not [line for line in fleet["a"].lines if line == "restart-worker"]


def test_hooks_and_custom_steps_run_in_order() -> None:
    @step
    def announce(ctx):  # type: ignore[no-untyped-def]
        yield "echo announcing {release}"
        yield Command.of("touch", f"{ctx.release_path}/announced")

    pipeline = Pipeline(
        run("middle", before=["first", run("second")], after="last"),
        announce,
    )
    fleet = FakeFleet()
    deploy_with_fakes(environment(), pipeline, fleet)
    layout_ops = ("lock", "record", "unlock")
    body = [op.line for op in fleet["local"].operations if op.description not in layout_ops]
    assert body == [
        "first",
        "second",
        "middle",
        "last",
        f"echo announcing {R}",
        f"touch /srv/app/releases/{R}/announced",
    ]


def test_local_custom_step_runs_on_the_controller_once() -> None:
    @step(local=True)
    def package(ctx):  # type: ignore[no-untyped-def]
        return "make dist"

    fleet = FakeFleet()
    deploy_with_fakes(environment(hosts=["a", "b"]), Pipeline(package, run("x")), fleet)
    assert fleet.controller.lines == ["make dist"]
    assert "make dist" not in fleet["a"].lines + fleet["b"].lines


def test_on_failure_steps_run_after_the_put_back_and_custom_rollback_restart() -> None:
    fleet = FakeFleet()
    target = fleet["local"]
    target.respond(state_with_previous)
    target.respond(
        lambda op: Result(1) if isinstance(op, Probe) and R in (op.contains or "") else None
    )
    pipeline = web_pipeline(
        on_failure=[rollback(restart="systemctl restart app"), run("notify-failure {release}")]
    )
    error, _ = deploy_with_fakes(environment(), pipeline, fleet)
    assert isinstance(error, DeployFailed)
    lines = target.lines
    assert "cd /srv/app/current && systemctl restart app" in lines
    assert lines.index("cd /srv/app/current && systemctl restart app") < lines.index(
        f"notify-failure {R}"
    )


def test_secrets_reach_commands_only_through_env_and_stdin() -> None:
    secret = "hunter2-very-secret"
    env = environment(variables={"API_TOKEN": Secret(secret), "PORT": "8000"})
    fleet = FakeFleet()
    fleet["local"].fail_when("use-token", stderr=f"token was {secret}")
    error, report = deploy_with_fakes(
        env,
        Pipeline(
            build("tar -czf {artifact} ."),
            push(),
            run("use-token $API_TOKEN"),
            switch(),
            verify(command("true")),
        ),
        fleet,
    )
    assert isinstance(error, DeployFailed)
    for line in fleet["local"].lines + fleet.controller.lines:
        assert secret not in line
    assert secret not in str(error)
    assert secret not in report.text()
    env_write = next(c for c in fleet["local"].commands if c.description == "push")
    assert isinstance(env_write.stdin, Secret)
    assert env_write.stdin.reveal() == envfile.render({"API_TOKEN": Secret(secret), "PORT": "8000"})
    user_command = next(c for c in fleet["local"].commands if c.script == "use-token $API_TOKEN")
    assert user_command.env["API_TOKEN"] == Secret(secret)


def test_verify_retries_and_reports_each_attempt() -> None:
    fleet = FakeFleet()
    answers = iter([Result(1, stderr="starting"), Result(1, stderr="starting"), Result(0)])
    fleet["local"].respond(lambda op: next(answers) if isinstance(op, Probe) else None)
    pipeline = Pipeline(verify(http("http://{host_address}/"), attempts=5, wait=0))
    outcome, report = deploy_with_fakes(environment(), pipeline, fleet)
    assert not isinstance(outcome, Exception)
    attempts = [e for e in report.events if e.kind == "check.attempt"]
    assert [(e.data["attempt"], e.data["ok"]) for e in attempts] == [
        (1, False),
        (2, False),
        (3, True),
    ]


@pytest.mark.parametrize("attempts", [1, 3])
def test_verify_gives_up_after_its_attempts(attempts: int) -> None:
    fleet = FakeFleet()
    fleet["local"].respond(lambda op: Result(1, stderr="down") if isinstance(op, Probe) else None)
    error, report = deploy_with_fakes(
        environment(), Pipeline(verify(http("http://x/"), attempts=attempts, wait=0)), fleet
    )
    assert isinstance(error, DeployFailed)
    assert len([e for e in report.events if e.kind == "check.attempt"]) == attempts


@pytest.mark.parametrize("pipeline", [web_pipeline, short_pipeline])
def test_a_switch_its_guard_refused_is_a_lost_lock_not_a_split_fleet(
    pipeline: Callable[[], Pipeline],
) -> None:
    """The lock of one host is removed between the last check (the fleet's before the switch,
    or the end of a push right before it) and the switch: its guard refuses the switch before
    anything moves. That host never left its release, the
    others are put back: exit 3, never "targets are on different releases"."""
    env = environment(hosts=[Host("h1", "h1"), Host("h2", "h2")])
    fleet = FakeFleet()
    fleet["h1"].respond(state_with_previous)
    lost = "the deploy lock here is no longer this deploy's (removed or taken over)"

    def refused(op: Operation) -> Result | None:
        if op.description.startswith("switch to"):
            return Result(remote_lock.LOCK_LOST_EXIT, stderr=lost)
        return state_with_previous(op)

    fleet["h2"].respond(refused)
    outcome, _ = deploy_with_fakes(env, pipeline(), fleet)
    assert isinstance(outcome, LockLost), outcome
    assert outcome.exit_code == 3
    assert "different releases" not in str(outcome)
    assert outcome.placement == {"h1": OLD, "h2": OLD}
    h1 = [op.description for op in fleet["h1"].operations]
    assert h1.index(f"switch to {R}") < h1.index(f"switch to {OLD}")  # put back
    h2 = [op.description for op in fleet["h2"].operations]
    assert f"switch to {OLD}" not in h2 and "unlock" not in h2  # untouched: not its lock


def test_a_push_right_before_the_switch_is_its_lock_check() -> None:
    """The push's one command ends by checking the lock: with nothing run after it, the fleet
    needs no check of its own before the first batch (with a step between them, it does: see
    ``test_deploy_runs_exact_operations``)."""
    env = environment(hosts=[Host("h1", "h1"), Host("h2", "h2")])
    fleet = FakeFleet()
    outcome, _ = deploy_with_fakes(env, short_pipeline(), fleet)
    assert not isinstance(outcome, Exception), outcome
    for name in ("h1", "h2"):
        ops = fleet[name].operations
        assert [op.description for op in ops] == [
            "lock",
            "push",
            f"switch to {R}",
            "restart",
            "check",
            "record",
        ]
        push_command = ops[1]
        assert isinstance(push_command, Command)
        guard = remote_lock.lock_guard(LAYOUT, TOKEN)
        assert push_command.guard == guard and push_command.script.endswith(guard)


def test_the_common_pipeline_costs_four_channels_per_host() -> None:
    """build, push, switch with a restart, verify over HTTP: the lock (with the state read),
    the push (prepare, artifact, unpack), the switch with its restart, and the end (record,
    cleanup, unlock), one exec channel each on every host."""
    env = environment(hosts=[Host(f"h{i}", f"h{i}") for i in range(3)], keep_releases=2)
    fleet = FakeFleet()
    outcome, _ = deploy_with_fakes(env, short_pipeline(), fleet)
    assert not isinstance(outcome, Exception), outcome
    for name in ("h0", "h1", "h2"):
        assert fleet[name].channels == 4, fleet[name].lines


def test_a_lock_lost_during_a_push_switches_nobody() -> None:
    """A push whose closing lock check fails on one host (the lock removed while it ran):
    no host switches, the run ends as a lost lock (exit 3) with every host where it was."""
    env = environment(hosts=[Host("h1", "h1"), Host("h2", "h2")])
    fleet = FakeFleet()
    fleet["h1"].respond(state_with_previous)
    lost = "the deploy lock here is no longer this deploy's (removed or taken over)"

    def refused(op: Operation) -> Result | None:
        if op.description == "push":
            return Result(remote_lock.LOCK_LOST_EXIT, stderr=lost)
        return state_with_previous(op)

    fleet["h2"].respond(refused)
    outcome, _ = deploy_with_fakes(env, short_pipeline(), fleet)
    assert isinstance(outcome, LockLost), outcome
    assert outcome.exit_code == 3
    assert outcome.placement == {"h1": OLD, "h2": OLD}
    for name in ("h1", "h2"):
        moves = [op for op in fleet[name].operations if op.description.startswith("switch")]
        assert moves == [], name


def test_the_end_of_a_deploy_is_one_command_whose_parts_fail_alone(tmp_path: Path) -> None:
    """Record, cleanup and unlock share one command on each target; run for real, each part's
    failure is what it was as a command of its own: a release log that cannot be written keeps
    the cleanup from running (and the lock is still released), a failed cleanup is a warning."""

    older = "20251230T000000Z-0lder00"
    (tmp_path / ".deploylib" / "lock").mkdir(parents=True)
    (tmp_path / ".deploylib" / "lock" / "owner.json").write_text(json.dumps({"token": TOKEN}))
    (tmp_path / "releases" / OLD).mkdir(parents=True)
    (tmp_path / "releases" / older).mkdir()
    env = environment(deploy_to=str(tmp_path), keep_releases=1)
    reporter = RecordingReporter()
    run = Run(env=env, reporter=reporter, clock=lambda: FIXED_TIME, parallel=1, revision="abc1234")
    run.release, run.lock_token = R, TOKEN
    target = Target(Host("h1", "h1"), LocalBackend())
    old_entries = tuple(
        {"event": "deploy", "outcome": "success", "release": r, "current": r} for r in (older, OLD)
    )
    target.read(
        TargetState(
            current=OLD,
            releases=frozenset({older, OLD}),
            complete=frozenset({older, OLD}),
            log=old_entries,
            current_kind="release",
        )
    )
    target.lock_taken(TOKEN)
    target.moved_to(R)
    (tmp_path / "releases" / R).mkdir()
    target.release_prepared()
    run.targets = [target]

    # the release log cannot be written (a directory in its place): no cleanup, lock released
    (tmp_path / ".deploylib" / "releases.jsonl").mkdir()
    removed = records.finish_all(run, R, [target])
    assert removed == {"h1": [older]}
    assert (tmp_path / "releases" / older).is_dir()  # the cleanup never ran
    assert not (tmp_path / ".deploylib" / "lock").exists() and not target.owns_lock
    warnings = [e.message for e in reporter.events if e.kind == "warning"]
    assert any("could not write the release log" in w for w in warnings), warnings

    # a cleanup that fails (current points, on the host, at what the log says may go): the
    # record is written, the lock released, the failure a warning
    (tmp_path / ".deploylib" / "releases.jsonl").rmdir()
    (tmp_path / ".deploylib" / "lock").mkdir()
    (tmp_path / ".deploylib" / "lock" / "owner.json").write_text(json.dumps({"token": TOKEN}))
    (tmp_path / "current").symlink_to(f"releases/{older}")
    target.lock_taken(TOKEN)
    reporter.events.clear()
    records.finish_all(run, R, [target])
    lines = (tmp_path / ".deploylib" / "releases.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["release"] == R
    assert (tmp_path / "releases" / older).is_dir()
    assert not (tmp_path / ".deploylib" / "lock").exists() and not target.owns_lock
    warnings = [e.message for e in reporter.events if e.kind == "warning"]
    assert any("cleanup failed" in w and "current points at it" in w for w in warnings), warnings
