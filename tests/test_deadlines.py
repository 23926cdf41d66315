"""Every wait has a deadline over the whole operation: HTTP checks and webhooks against servers
that trickle a byte at a time, and verify deadlines that cut long checks."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.checks import retry_checks
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.probes import perform_probe
from deploylib.reporting import Event, WebhookReporter
from tests.conftest import BASIC_PIPELINE, Fleet, Project
from tests.testbed.slowhttp import FullBacklog, SlowHTTPServer

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
        time.sleep(1.05)  # a new release id
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


def checks_until_done(operations: list[Operation], deadline: float) -> tuple[Result, float]:
    attempts: list[Result] = []
    started = time.monotonic()
    result = retry_checks(
        LocalBackend(default_timeout=600),
        operations,
        attempts=5,
        wait=0.1,
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


def test_no_attempt_starts_after_the_verify_deadline() -> None:
    result, took = checks_until_done([Command("sleep 0.7; false")], deadline=1)
    assert not result.ok
    assert took < 5, took


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
