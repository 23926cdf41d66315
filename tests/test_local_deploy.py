"""Real deploys into temp dirs through the local backend: success, failures, rollback, cleanup."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from dotenv import dotenv_values

from deploylib import DeployFailed, LockHeld
from tests.conftest import BASIC_PIPELINE, Project, start_cli


def test_deploy_creates_the_layout(project: Project) -> None:
    outcome, report = project.deploy()
    release = outcome.release
    target = project.target

    assert release.endswith("-abc1234")
    assert os.readlink(target / "current") == f"releases/{release}"
    assert (target / "current" / "index.txt").read_text() == "hello\n"
    assert (target / "releases" / release / "REVISION").read_text() == f"{release} abc1234\n"
    assert os.readlink(target / "releases" / release / "log") == str(target / "shared" / "log")
    # config follows the release: its own env file, and shared/.env follows current
    env_file = target / "releases" / release / ".env"
    assert not env_file.is_symlink() and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert os.readlink(target / "shared" / ".env") == str(target / "current" / ".env")
    assert (target / "shared" / ".env").read_text() == env_file.read_text()
    assert (target / "shared" / "restarts").read_text() == f"{release}\n"
    assert not (target / ".deploylib" / "lock").exists()
    assert not list((target / ".deploylib" / "uploads").iterdir())
    assert not list(target.glob(".current-*")) and not list(target.glob(".deploylib/lock.*"))
    [entry] = project.log()
    assert (entry["event"], entry["outcome"], entry["release"], entry["current"]) == (
        "deploy",
        "success",
        release,
        release,
    )
    assert report.kinds()[-1] == "deploy.ok"


def test_failed_prepare_keeps_the_old_release_live(project: Project) -> None:
    first, _ = project.deploy()
    project.write("app/FAIL_PREPARE", "")

    with pytest.raises(DeployFailed) as failure:
        project.deploy()

    assert failure.value.exit_code == 1
    assert project.current() == first.release
    assert project.release_dirs() == {first.release}
    assert not (project.target / ".deploylib" / "lock").exists()
    assert [e["outcome"] for e in project.log()] == ["success", "failed"]
    assert (project.target / "shared" / "restarts").read_text() == f"{first.release}\n"


def test_failed_verify_switches_back_and_restarts_the_old_release(project: Project) -> None:
    first, _ = project.deploy()
    project.write("app/BROKEN", "")

    with pytest.raises(DeployFailed) as failure:
        project.deploy()

    assert failure.value.placement == {"local": first.release}
    assert project.current() == first.release
    assert project.release_dirs() == {first.release}
    restarts = (project.target / "shared" / "restarts").read_text().split()
    assert restarts[0] == restarts[-1] == first.release and len(restarts) == 3
    last = project.log()[-1]
    assert (last["outcome"], last["current"]) == ("rolled_back", first.release)
    assert not (project.target / ".deploylib" / "lock").exists()


def test_rollback_uses_the_log_not_directory_order(project: Project) -> None:
    a, _ = project.deploy(revision="aaaa")
    b, _ = project.deploy(revision="bbbb")
    c, _ = project.deploy(revision="cccc")
    assert project.current() == c.release

    assert project.rollback().release == b.release
    assert project.current() == b.release
    assert project.rollback().release == a.release
    assert project.current() == a.release
    with pytest.raises(DeployFailed, match="no earlier release"):
        project.rollback()
    assert project.current() == a.release
    assert project.rollback(to=c.release).release == c.release
    events = [(e["event"], e["release"]) for e in project.log()]
    assert events[-3:] == [
        ("rollback", b.release),
        ("rollback", a.release),
        ("rollback", c.release),
    ]
    # a release id that sorts last but was never deployed successfully is not a target
    (project.target / "releases" / "29991231T000000Z-zzzz").mkdir()
    with pytest.raises(DeployFailed, match="is not there"):
        project.rollback(to="29991231T000000Z-zzzz")


def test_cleanup_keeps_keep_releases(project: Project) -> None:
    releases = [project.deploy(revision=f"r{i}")[0].release for i in range(5)]
    assert project.release_dirs() == set(releases[-3:])  # keep_releases = 3
    assert project.current() == releases[-1]


def test_cleanup_never_removes_current_or_the_rollback_target(project: Project) -> None:
    project.write(
        "deploy.toml",
        (project.root / "deploy.toml")
        .read_text()
        .replace("keep_releases = 3", "keep_releases = 1"),
    )
    releases = [project.deploy(revision=f"r{i}")[0].release for i in range(3)]
    # keep 1 would leave only current; the release a rollback goes to stays too
    assert project.release_dirs() == {releases[1], releases[2]}
    assert project.rollback().release == releases[1]
    project.write("app/BROKEN", "")
    with pytest.raises(DeployFailed):
        project.deploy(revision="broken")
    assert project.current() == releases[1]
    assert project.current() in project.release_dirs()


def test_a_second_deploy_is_refused_while_locked(project: Project) -> None:
    lock = project.hold_lock(
        {"user": "bob", "host": "ci", "pid": 1, "started_at": "2026-03-01T00:00:00+00:00"}
    )
    with pytest.raises(LockHeld, match="bob@ci"):
        project.deploy()
    assert lock.is_dir()  # someone else's lock stays
    assert project.release_dirs() == set()

    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 3
    assert "bob@ci" in result.stdout + result.stderr


def test_dry_run_prints_commands_and_changes_nothing(project: Project) -> None:
    result = project.cli("deploy", "--env", "dev", "--dry-run", "--revision", "abc1234")
    assert result.returncode == 0, result.stderr
    assert not project.target.exists()
    out = result.stdout
    assert "tar -czf" in out and "mv -T" in out and "[dry run]" in out
    assert f"{project.target}/current" in out


def test_secrets_go_to_shared_env_and_never_to_output(project: Project) -> None:
    secret = "pa55-w0rd-t0ken"
    project.write(".env", f"API_TOKEN={secret}\nPORT=8000\n")
    project.write(".env.dev", "EXTRA='dev only'\n")
    project.write(
        "pipelines/leak.py",
        """\
        from deploylib import Pipeline, build, push, run, switch, verify, command
        pipeline = Pipeline(
            build("tar -czf {artifact} -C app . && echo building with $API_TOKEN"),
            push(),
            run("echo $API_TOKEN > {release_path}/seen && echo oops $API_TOKEN >&2 && false"),
            switch(),
            verify(command("true")),
        )
        """,
    )
    events = project.root / "events.jsonl"
    result = project.cli("deploy", "--env", "dev", "--pipeline", "leak", "--events", str(events))
    assert result.returncode == 1
    assert "oops ***" in result.stdout + result.stderr
    for text in (
        result.stdout,
        result.stderr,
        events.read_text(),
        (project.target / ".deploylib" / "releases.jsonl").read_text(),
    ):
        assert secret not in text
    # the failed release took its env file with it; a deploy that goes live brings its own
    assert not (project.target / "shared" / ".env").exists()
    project.deploy()
    env_file = project.target / "shared" / ".env"
    assert dotenv_values(env_file) == {"API_TOKEN": secret, "PORT": "8000", "EXTRA": "dev only"}
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_env_values_reach_local_build_and_target_commands(project: Project) -> None:
    project.write(".env", "GREETING=hi there\n")
    project.write(
        "pipelines/web.py",
        """\
        from deploylib import Pipeline, build, push, run, switch, verify, command
        pipeline = Pipeline(
            build('echo "$GREETING" > app/built && tar -czf {artifact} -C app .'),
            push(),
            run('echo "$GREETING" > {release_path}/ran'),
            switch(),
            verify(command('grep -q "hi there" {current_path}/built')),
        )
        """,
    )
    outcome, _ = project.deploy()
    assert (project.target / "releases" / outcome.release / "ran").read_text() == "hi there\n"


def test_release_id_collision_is_refused_before_anything_changes(project: Project) -> None:
    from datetime import UTC, datetime

    from deploylib import actions
    from deploylib.reporting import RecordingReporter

    loaded = actions.load(project.root / "deploy.toml", "dev")
    same = datetime(2026, 5, 5, tzinfo=UTC)
    actions.deploy(loaded, reporter=RecordingReporter(), revision="abc", clock=lambda: same)
    with pytest.raises(DeployFailed, match="already exists") as refused:
        actions.deploy(loaded, reporter=RecordingReporter(), revision="abc", clock=lambda: same)
    assert refused.value.exit_code == 1 and "nothing was changed" in str(refused.value)
    assert len(project.log()) == 1
    assert not (project.target / ".deploylib" / "lock").exists()


def test_interrupt_during_prepare_removes_the_release_and_unlocks(project: Project) -> None:
    first, _ = project.deploy()
    process = project.start_slow_deploy(30)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, out + err
    assert project.current() == first.release
    assert project.release_dirs() == {first.release}
    assert not (project.target / ".deploylib" / "lock").exists()
    assert "interrupted" in out + err


def test_two_deploys_at_once_the_second_gets_exit_3(project: Project) -> None:
    first = project.start_slow_deploy(3)
    second = project.cli("deploy", "--env", "dev")
    out, err = first.communicate(timeout=60)

    assert second.returncode == 3, second.stdout + second.stderr
    assert "locked by" in second.stdout + second.stderr
    assert first.returncode == 0, out + err
    assert [e["outcome"] for e in project.log()] == ["success"]
    assert not (project.target / ".deploylib" / "lock").exists()


def test_lock_wait_queues_the_second_deploy_behind_the_first(project: Project) -> None:
    first = project.start_slow_deploy(3)
    second = project.cli("deploy", "--env", "dev", "--lock-wait", "60")
    out, err = first.communicate(timeout=60)

    assert first.returncode == 0, out + err
    assert second.returncode == 0, second.stdout + second.stderr
    said = second.stdout + second.stderr
    assert "waiting for the deploy lock" in said and "held by" in said and "pid" in said
    log = project.log()
    assert [e["outcome"] for e in log] == ["success", "success"]
    assert project.current() == log[1]["release"] != log[0]["release"]  # one after the other
    assert not (project.target / ".deploylib" / "lock").exists()


def test_lock_wait_gives_up_with_exit_3(project: Project) -> None:
    first = project.start_slow_deploy(20)
    try:
        second = project.cli("deploy", "--env", "dev", "--lock-wait", "0.5")
        assert second.returncode == 3, second.stdout + second.stderr
        assert "locked by" in second.stdout + second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    bad = project.cli("deploy", "--env", "dev", "--lock-wait", "soon")
    assert bad.returncode == 2 and "--lock-wait" in bad.stderr


def test_tcp_and_http_checks_against_real_listeners(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import socket
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/ok" else 503
            body = b"fine" if code == 200 else b"starting"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    monkeypatch.setenv("WEB_PORT", str(server.server_address[1]))
    monkeypatch.setenv("CLOSED_PORT", str(closed.getsockname()[1]))
    try:
        project.write(
            "pipelines/checks.py",
            """\
            from deploylib import Pipeline, build, push, switch, verify, http, tcp
            pipeline = Pipeline(
                build("tar -czf {artifact} -C app ."), push(), switch(),
                verify(tcp("${WEB_PORT}"), http("http://{host_address}:${WEB_PORT}/ok",
                       contains="fine"), attempts=2, wait=0),
            )
            """,
        )
        project.deploy(pipeline="checks")
        for check in ('tcp("${CLOSED_PORT}")', 'http("http://127.0.0.1:${WEB_PORT}/down")'):
            project.write(
                "pipelines/bad.py",
                f"""\
                from deploylib import Pipeline, build, push, switch, verify, http, tcp
                pipeline = Pipeline(
                    build("tar -czf {{artifact}} -C app ."), push(), switch(),
                    verify({check}, attempts=2, wait=0),
                )
                """,
            )
            with pytest.raises(DeployFailed, match=r"refused|status 503"):
                project.deploy(pipeline="bad")
    finally:
        server.shutdown()
        closed.close()


def test_step_timeout_bounds_a_step(project: Project) -> None:
    project.write(
        "deploy.toml",
        (project.root / "deploy.toml")
        .read_text()
        .replace("keep_releases = 3", "keep_releases = 3\nstep_timeout = 1"),
    )
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}")', 'run("sleep 20")'
        ),
    )
    started = time.monotonic()
    with pytest.raises(DeployFailed, match="timed out"):
        project.deploy()
    assert time.monotonic() - started < 10
    assert project.current() is None and project.release_dirs() == set()


def test_a_stale_lock_is_reported_with_how_to_remove_it(project: Project) -> None:
    import socket

    from deploylib import locks

    # a deploy that ran on this machine, in this PID namespace, and died without unlocking
    dead = subprocess.Popen(["sleep", "30"])
    identity = locks.process_identity(dead.pid)
    dead.kill()
    dead.wait()
    lock = project.hold_lock(
        {
            "user": "ci",
            "host": socket.gethostname(),
            "pid": dead.pid,
            "started_at": "earlier",
            "token": "0123456789abcdef",
            **identity,
        }
    )
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 3
    message = result.stdout + result.stderr
    assert "STALE" in message and f"pid {dead.pid}" in message
    assert "remove the lock with: deploylib unlock --env dev\n" in message.replace(")", "\n")
    assert lock.is_dir()  # reported, never broken silently
    # the command named works as it is: no --force needed for a lock whose holder is gone
    unlocked = project.cli("unlock", "--env", "dev")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    assert not lock.exists()
    assert project.cli("deploy", "--env", "dev").returncode == 0


def test_a_deploy_started_by_a_hook_runs_under_its_parents_lock(project: Project) -> None:
    project.write(
        "pipelines/noop.py",
        """\
        from deploylib import Pipeline, run
        pipeline = Pipeline(run("touch {deploy_to}/nested-ran"))
        """,
    )
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            "    verify(",
            '    run("cd '
            + str(project.root)
            + " && "
            + sys.executable
            + ' -m deploylib deploy --env dev --pipeline noop", name="nested"),\n    verify(',
        ),
    )
    outcome, _ = project.deploy()
    assert (project.target / "nested-ran").exists()
    assert project.current() == outcome.release
    assert not (project.target / ".deploylib" / "lock").exists()


def test_the_lock_heartbeat_beats_during_a_deploy(project: Project) -> None:
    import threading

    from deploylib import actions
    from deploylib.reporting import RecordingReporter
    from deploylib.runner import Runner

    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}")', 'run("sleep 2")'
        ),
    )
    loaded = actions.load(project.root / "deploy.toml", "dev")
    factory = actions.backend_factory(loaded.env, dry_run=False, reporter=RecordingReporter())
    runner = Runner(
        loaded.env,
        loaded.pipeline,
        backend_for=factory,
        controller=factory(loaded.hosts[0]),
        reporter=RecordingReporter(),
        clock=project.clock,
        heartbeat=0.3,
    )
    thread = threading.Thread(target=runner.deploy, args=(loaded.hosts,))
    thread.start()
    beat = project.target / ".deploylib" / "lock" / "heartbeat"
    seen = set()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        if beat.exists():
            seen.add(beat.stat().st_mtime_ns)
        time.sleep(0.05)
    thread.join()
    assert len(seen) >= 3  # taken, then touched every 0.3 s while the run step sleeps
    assert not beat.parent.exists()


def test_sigterm_during_prepare_cleans_up_like_ctrl_c(project: Project) -> None:
    first, _ = project.deploy()
    process = project.start_slow_deploy(30)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, out + err
    assert project.current() == first.release
    assert project.release_dirs() == {first.release}
    assert not (project.target / ".deploylib" / "lock").exists()


def test_dry_run_never_shows_a_secret(project: Project) -> None:
    secret = "dry-run-secret-value"
    project.write(".env", f"API_TOKEN={secret}\n")
    result = project.cli("deploy", "--env", "dev", "--dry-run", "--revision", "abc")
    assert result.returncode == 0, result.stderr
    assert "API_TOKEN=***" in result.stdout and "<stdin: *** (secret)>" in result.stdout
    assert secret not in result.stdout + result.stderr


def test_ctrl_c_while_waiting_for_a_lock_leaves_the_holder_alone(project: Project) -> None:
    first = project.start_slow_deploy(6)
    second = start_cli(project.root, "deploy", "--env", "dev", "--lock-wait", "60")
    assert second.stdout is not None
    seen = []
    for line in second.stdout:
        seen.append(line)
        if "waiting for the deploy lock" in line:
            break
    second.send_signal(signal.SIGINT)
    out, err = second.communicate(timeout=30)
    assert second.returncode != 0, "".join(seen) + out + err
    assert "interrupted" in "".join(seen) + out + err
    # the deploy holding the lock was not disturbed, and nothing of the second is left
    done_out, done_err = first.communicate(timeout=60)
    assert first.returncode == 0, done_out + done_err
    assert [e["outcome"] for e in project.log()] == ["success"]
    assert not (project.target / ".deploylib" / "lock").exists()
