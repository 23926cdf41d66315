"""Every wait has a deadline over the whole operation: HTTP checks and webhooks against servers
that trickle a byte at a time, verify deadlines that cut long checks, and commands whose
background child keeps their output open."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.check_retries import retry_checks
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.probes import perform_probe
from deploylib.reporting import Event, WebhookReporter
from tests.conftest import BASIC_PIPELINE, Fleet, Project, start_cli
from tests.testbed.slowhttp import FullBacklog, SlowHTTPServer

pytestmark = pytest.mark.slow

FleetOf = Callable[[int], Fleet]
ORIGINAL_VERIFY = 'verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0)'


# ---------------------------------------------------------------------------- HTTP checks


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_a_trickling_http_probe_ends_at_its_timeout(trickle: str) -> None:
    with SlowHTTPServer(trickle, interval=0.5) as server:
        started = time.monotonic()
        result = perform_probe(Probe("http", url=server.url, timeout=1.5))
        took = time.monotonic() - started
    assert not result.ok and result.timed_out
    assert "within 1.5 s" in result.stderr
    assert took < 10, took  # the server would go on for ten minutes


def test_an_http_probe_against_a_prompt_server_still_passes() -> None:
    with SlowHTTPServer("none") as server:
        result = perform_probe(Probe("http", url=server.url, contains="ok ok", timeout=5))
    assert result.ok, result


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_verify_against_a_trickling_server_fails_the_deploy_by_its_deadline(
    project: Project, trickle: str
) -> None:
    first = project.cli("deploy", "--env", "dev")
    assert first.returncode == 0, first.stdout + first.stderr
    old = project.current()
    with SlowHTTPServer(trickle, interval=1.0) as server:
        project.write(
            "pipelines/web.py",
            BASIC_PIPELINE.replace("command\n", "command, http\n").replace(
                ORIGINAL_VERIFY, f'verify(http("{server.url}"), attempts=50, wait=0.2, deadline=3)'
            ),
        )
        started = time.monotonic()
        result = project.cli("deploy", "--env", "dev", timeout=120)
        took = time.monotonic() - started

    assert result.returncode == 1, result.stdout + result.stderr
    # verify (3 s) and the re-verify of the put-back release (3 s) plus the deploy itself
    assert took < 40, took
    assert "within" in result.stdout
    assert project.current() == old
    assert project.release_dirs() == {old}


# ---------------------------------------------------------------------------- verify deadline


def checks_until_done(
    operations: list[Operation], deadline: float, wait: float = 0.1
) -> tuple[Result, float]:
    attempts: list[Result] = []
    started = time.monotonic()
    result = retry_checks(
        LocalBackend(default_timeout=600),
        operations,
        attempts=5,
        wait=wait,
        deadline=deadline,
        on_attempt=lambda _n, r: attempts.append(r),
    )
    return result, time.monotonic() - started


def test_the_verify_deadline_cuts_a_command_check_short() -> None:
    result, took = checks_until_done([Command("sleep 30", timeout=60)], deadline=2)
    assert not result.ok and result.timed_out
    assert took < 10, took  # not the command's own 60 s


def test_the_verify_deadline_cuts_a_tcp_check_short() -> None:
    with FullBacklog() as port:  # a connect there hangs: neither accepted nor refused
        result, took = checks_until_done(
            [Probe("tcp", host="127.0.0.1", port=port.port, timeout=30)], deadline=2
        )
    assert not result.ok and result.timed_out
    assert took < 10, took  # not the probe's own 30 s


def test_the_wait_between_attempts_never_runs_past_the_verify_deadline() -> None:
    result, took = checks_until_done([Command("sleep 0.7; false")], deadline=1.5, wait=10)
    assert not result.ok
    assert took < 6, took  # not 0.7 s + a 10 s wait + another attempt


# ---------------------------------------------------------------------------- webhooks


def test_a_trickling_webhook_is_cut_off_and_reported() -> None:
    errors: list[str] = []
    with SlowHTTPServer("body", interval=0.5) as server:
        reporter = WebhookReporter(server.url, {"app": "demo"}, errors.append, timeout=1.5)
        started = time.monotonic()
        reporter.emit(Event("deploy.start", "deploying"))
        took = time.monotonic() - started
        assert len(server.requests) == 1 and b'"event": "deploy.start"' in server.requests[0]
    assert took < 10, took
    assert len(errors) == 1 and "within 1.5 s" in errors[0], errors


def test_ctrl_c_during_a_notification_ends_it_at_once() -> None:
    errors: list[str] = []
    with SlowHTTPServer("headers", interval=0.5) as server:
        reporter = WebhookReporter(server.url, {}, errors.append, timeout=60)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        try:
            reporter.emit(Event("deploy.ok", "deployed"))
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C during a notification was raised out of the reporter")
        finally:
            timer.join()
        took = time.monotonic() - started
    assert took < 5, took
    assert len(errors) == 1 and "interrupted" in errors[0], errors


def test_a_trickling_webhook_does_not_hold_the_deploy(project: Project) -> None:
    with SlowHTTPServer("body", interval=1.0) as server:
        toml = (project.root / "deploy.toml").read_text()
        project.write("deploy.toml", toml + f'\n[notify]\nwebhook = "{server.url}"\n')
        started = time.monotonic()
        result = project.cli("deploy", "--env", "dev", timeout=120)
        took = time.monotonic() - started
        posted = len(server.requests)

    assert result.returncode == 0, result.stdout + result.stderr
    assert posted == 2  # deploy.start and deploy.ok, each cut off after 5 s
    assert took < 40, took
    assert "notify webhook" in result.stdout and "within 5 s" in result.stdout
    assert project.current() is not None


# ---------------------------------------------------------------------------- background output


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def killed_at_the_end(pids: list[int]) -> Iterator[list[int]]:
    """Kill every PID appended to the list when the block ends, also on failure."""
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


RESTART = "nohup sleep 60 & echo $!; echo restarted >&2; exit 3"


def assert_left_open(result: Result, took: float, pids: list[int]) -> None:
    pids.append(int(result.stdout.split()[0]))
    assert took < 15, took  # the background sleep holds the output for 60 s
    assert result.exit_code == 3, result
    assert "restarted" in result.stderr
    assert ">/dev/null 2>&1 </dev/null" in result.note
    assert alive(pids[0])  # the background process still runs


def test_local_command_whose_background_child_keeps_the_output(tmp_path: Path) -> None:
    backend = LocalBackend(default_timeout=600)
    with killed_at_the_end([]) as pids:
        started = time.monotonic()
        result = backend.run(Command(RESTART, cwd=str(tmp_path)))
        assert_left_open(result, time.monotonic() - started, pids)
    plain = backend.run(Command("echo hi; exit 4"))
    assert (plain.exit_code, plain.stdout, plain.note) == (4, "hi\n", "")


def test_ssh_command_whose_background_child_keeps_the_output(fleet_of: FleetOf) -> None:

    backend = fleet_of(1).backend(
        default_timeout=600, connect_timeout=3, channel_timeout=3, alive_interval=1
    )
    try:
        with killed_at_the_end([]) as pids:
            started = time.monotonic()
            result = backend.run(Command(RESTART))
            assert_left_open(result, time.monotonic() - started, pids)
            after = backend.run(Command("echo still here"))  # the connection still works
            assert after.ok and after.stdout == "still here\n" and after.note == ""
    finally:
        backend.close()


def restart_in_background(pid_file: str) -> str:
    """The basic pipeline with a restart that leaves ``sleep 60`` holding its output."""
    return BASIC_PIPELINE.replace(
        'switch(restart="echo {release} >> {shared_path}/restarts")',
        f'switch(restart="nohup sleep 60 & echo $! > {pid_file}")',
    )


def test_a_local_deploy_whose_restart_leaves_a_background_child(project: Project) -> None:
    project.write("pipelines/web.py", restart_in_background("{shared_path}/bg.pid"))
    with killed_at_the_end([]) as pids:
        started = time.monotonic()
        result = project.cli("deploy", "--env", "dev", timeout=120)
        took = time.monotonic() - started
        pids.append(int((project.target / "shared" / "bg.pid").read_text()))
        assert result.returncode == 0, result.stdout + result.stderr
        assert took < 30, took
        assert alive(pids[0])


def test_an_ssh_deploy_whose_restart_leaves_a_background_child(fleet_of: FleetOf) -> None:
    fleet = fleet_of(2)
    fleet.project.write("pipelines/web.py", restart_in_background("/srv/bg.pid"))
    with killed_at_the_end([]) as pids:
        started = time.monotonic()
        result = fleet.project.cli("deploy", "--env", "fleet", timeout=120)
        took = time.monotonic() - started
        for host in fleet.hosts.hosts:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pids.append(int((host.srv / "bg.pid").read_text()))
        assert result.returncode == 0, result.stdout + result.stderr
        assert took < 30, took
        assert len(pids) == 2 and all(alive(pid) for pid in pids)


def test_the_outcome_is_notified_after_the_locks_are_released(project: Project) -> None:
    """A slow notification of a failed deploy holds no lock, and a Ctrl-C during it waits at
    most for its own deadline (5 s) before deploylib exits with the deploy's outcome."""
    project.deploy()
    project.write("app/BROKEN", "")
    with SlowHTTPServer("body", interval=1.0) as server:
        toml = (project.root / "deploy.toml").read_text()
        project.write("deploy.toml", toml + f'\n[notify]\nwebhook = "{server.url}"\n')
        process = start_cli(project.root, "deploy", "--env", "dev")
        try:
            deadline = time.monotonic() + 30
            while len(server.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert b"deploy.failed" in b"".join(server.requests), server.requests
            # while deploy.failed trickles out: the deploy is over, its lock gone
            assert not (project.target / ".deploylib" / "lock").exists()
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert time.monotonic() - interrupted < 8
    assert process.returncode == 1, out + err  # the deploy's own outcome
    assert "every target is back" in out
