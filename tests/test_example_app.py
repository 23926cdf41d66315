"""The bundled example, deployed as the README says: real gunicorn on loopback, real reloads."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.testbed.load import Load, free_port, get

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("gunicorn") is None, reason="gunicorn is not installed"),
]


class Example:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HELLO_PORT": str(self.port), "CI": "true"},
        )

    def git(self, *args: str) -> None:
        done = self.run("git", "-c", "user.name=t", "-c", "user.email=t@t", *args)
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def pidfile(self) -> Path:
        return self.root / ".deploy" / "dev" / "shared" / "gunicorn.pid"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Example]:
    root = tmp_path / "hello"
    root.mkdir()
    for name in ("deploy.toml", "tasks.py"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    shutil.copytree(
        REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / ".gitignore").write_text(".deploy/\n__pycache__/\n")
    project = Example(root, free_port())
    # a clone, as CI has it: the pipeline deploys the committed example (git archive)
    project.git("init", "-q")
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "the example")
    yield project
    if project.pidfile.exists():
        pid = int(project.pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            time.sleep(0.1)


def test_example_deploys_reloads_without_failed_requests_and_rolls_back(example: Example) -> None:
    first = example.run(sys.executable, "-m", "invoke", "deploy", "--env=dev")
    assert first.returncode == 0, first.stdout + first.stderr
    release_1 = get(example.port, "/health").split()[1]
    assert f"http://127.0.0.1:{example.port}/health" in first.stdout  # where it runs
    pid = int(example.pidfile.read_text())

    # an uncommitted edit is not deployed; the next commit is
    (example.root / "examples" / "hello" / "app.py").write_text("raise SystemExit('edit')\n")
    example.git("commit", "-q", "--allow-empty", "-m", "the next commit")
    with Load(example.port) as load:
        load.wait_for_answers(10)  # requests are flowing before the deploy
        second = example.run(sys.executable, "-m", "deploylib", "deploy", "--env", "dev")
        load.wait_for_answers(10)  # and go on after it
    assert second.returncode == 0, second.stdout + second.stderr
    release_2 = get(example.port, "/health").split()[1]
    assert release_2 != release_1
    assert load.failures == []
    assert sum(load.bodies.values()) > 20
    assert f"hello from release {release_2}" in load.bodies
    # a new master on the new release (USR2), the old one gone once it had finished
    assert int(example.pidfile.read_text()) != pid
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"
    head = example.run("git", "rev-parse", "HEAD").stdout.strip()
    revision = example.root / ".deploy" / "dev" / "releases" / release_2 / "REVISION"
    assert revision.read_text().split() == [release_2, head]  # the commit, by its full id

    back = example.run(sys.executable, "-m", "deploylib", "rollback", "--env", "dev")
    assert back.returncode == 0, back.stdout + back.stderr
    assert get(example.port, "/health").split()[1] == release_1

    status = example.run(sys.executable, "-m", "deploylib", "status", "--env", "dev", "--json")
    assert status.returncode == 0
    import json

    [row] = json.loads(status.stdout)
    assert row["current"] == release_1 and row["locked"] is False

    # the project's own task stops the app the deploys started
    pid = int(example.pidfile.read_text())
    stop = example.run(sys.executable, "-m", "invoke", "stop")
    assert stop.returncode == 0 and f"pid {pid}" in stop.stdout, stop.stdout + stop.stderr
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"
    with pytest.raises(OSError):
        get(example.port, "/health")
    again = example.run(sys.executable, "-m", "invoke", "stop")
    assert again.returncode == 0 and "not running" in again.stdout


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
