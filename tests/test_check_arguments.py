"""Specifies that a check's arguments are checked when the pipeline is loaded: a URL that is not
http(s), a port out of range, a timeout that is not a positive number of seconds. Such a check
could only fail after the release went live (and be put back); it is a pipeline error instead,
exit 2, nothing touched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deploylib import ConfigError, command, http, tcp
from deploylib.checks import Check
from tests.conftest import BASIC_PIPELINE, Project

REFUSED: dict[str, Callable[[], Check]] = {
    "ftp": lambda: http("ftp://127.0.0.1/"),
    "no scheme": lambda: http("127.0.0.1:8000/health"),
    "open bracket": lambda: http("http://[::1/"),
    "port too high": lambda: http("http://127.0.0.1:99999/"),
    "no host": lambda: http("http:///health"),
    "status": lambda: http("http://127.0.0.1/", status=42),
    "zero timeout": lambda: http("http://127.0.0.1/", timeout=0),
    "endless timeout": lambda: http("http://127.0.0.1/", timeout=float("inf")),
    "tcp port": lambda: tcp(70000),
    "tcp port 0": lambda: tcp(0),
    "tcp port text": lambda: tcp("http"),
    "empty command": lambda: command("  "),
    "command timeout": lambda: command("true", timeout=-1),
}


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
def test_a_check_that_could_never_pass_is_refused_when_made(make: Callable[[], Check]) -> None:
    with pytest.raises(ConfigError):
        make()


def test_placeholders_and_variables_are_left_for_later() -> None:
    http("http://{host_address}:{port}/health")
    http("${APP_URL}/health")
    http("https://example.test:8443/health", status=None, timeout=0.5)
    tcp("{port}")
    tcp("8000")
    command("test -f {current_path}/REVISION", timeout=120)


def test_a_pipeline_with_such_a_check_fails_before_anything_is_touched(project: Project) -> None:
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0)',
            'verify(http("ftp://127.0.0.1/"), attempts=1)',
        ).replace("verify, command", "verify, command, http"),
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ftp://127.0.0.1/" in done.stdout + done.stderr
    assert "web.py" in done.stdout + done.stderr
    assert not project.target.exists()
