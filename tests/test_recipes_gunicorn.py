"""The gunicorn recipe, for real: releases whose venvs differ, replaced under load without a
failed request; the new master imports the new venv (also with --preload); a failed verify
puts back the old release, served by its own code again."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed.load import Load, free_port, get
from tests.testbed.pyapp import PyApp, build_and_venv, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils"),
]


def pipeline(port: int, preload: bool) -> str:
    return build_and_venv() + (
        "from deploylib.recipes import gunicorn\n"
        "pipeline = Pipeline(BUILD, push(), VENV,\n"
        f"    gunicorn('app:app', bind='127.0.0.1:{port}', workers=2, preload={preload}),\n"
        f"    verify(http('http://127.0.0.1:{port}/health', contains='{{release}} dep='),\n"
        "           attempts=20, wait=0.25, deadline=30),\n"
        ")\n"
    )


@pytest.fixture(params=[False, True], ids=["no-preload", "preload"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[PyApp, int]]:
    port = free_port()
    project = PyApp(tmp_path / "p", pipeline(port, request.param))
    yield project, port
    for name in ("gunicorn.pid.2", "gunicorn.pid"):
        pidfile = project.srv / "shared" / name
        if pidfile.exists() and pidfile.read_text().strip():
            stop(int(pidfile.read_text()))


def answer(port: int) -> tuple[str, str]:
    """The release and dep version that answer ``/health``."""
    _, release, dep = get(port, "/health").split()
    return release, dep


def test_usr2_serves_the_new_venv_without_failed_requests_and_a_failed_verify_puts_back(
    served: tuple[PyApp, int],
) -> None:
    project, port = served
    pidfile = project.srv / "shared" / "gunicorn.pid"

    first = project.deploy()
    assert first.returncode == 0, first.stdout + first.stderr
    release_1, dep = answer(port)
    assert dep == "dep=1"
    master_1 = int(pidfile.read_text())

    project.set_dep("2")
    with Load(port, max_requests=100_000, max_seconds=120) as load:
        load.wait_for_answers(10)  # requests are flowing before the deploy
        second = project.deploy()
        load.wait_for_answers(10)  # and after it
    assert second.returncode == 0, second.stdout + second.stderr
    print(f"deploy under load: {sum(load.bodies.values())} answered, {len(load.failures)} failed")
    assert load.failures == []
    assert sum(load.bodies.values()) > 20
    release_2, _ = answer(port)
    assert release_2 != release_1
    # every process serving now imports dep from the new release's venv
    assert {answer(port) for _ in range(20)} == {(release_2, "dep=2")}
    assert load.bodies[f"ok {release_2} dep=2"] > 0
    master_2 = int(pidfile.read_text())
    assert master_2 != master_1 and not Path(f"/proc/{master_1}/cmdline").exists()
    assert not (project.srv / "shared" / "gunicorn.pid.2").exists()
    exe = Path(f"/proc/{master_2}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert exe == f"{project.srv}/current/.venv/bin/python"

    # release 3 answers /health with 500: verify fails, release 2 is put back and restarted
    project.set_dep("3", broken=True)
    with Load(port, max_requests=100_000, max_seconds=120) as load:
        load.wait_for_answers(10)
        third = project.deploy()
        load.wait_for_answers(10)
    assert third.returncode == 1, third.stdout + third.stderr
    print(f"put back under load: {sum(load.bodies.values())} answered, {len(load.failures)} failed")
    assert load.failures == []
    assert load.bodies[f"ok {release_2} dep=2"] > 0
    assert {answer(port) for _ in range(20)} == {(release_2, "dep=2")}
    assert (project.srv / "current").resolve().name == release_2
    assert int(pidfile.read_text()) not in (master_1, master_2)
