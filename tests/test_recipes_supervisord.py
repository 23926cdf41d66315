"""The supervisord recipe with a real supervisord (Debian's, or from PyPI into a venv of the
test's own): started by the first deploy with its config and socket under shared/, the program
restarted on each new release (from its venv), and a failed verify puts the old one back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed.load import free_port, get
from tests.testbed.pyapp import PyApp, build_and_venv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def supervisor_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of supervisord and supervisorctl."""
    found = shutil.which("supervisord")
    if found and shutil.which("supervisorctl"):
        return Path(found).parent
    venv = tmp_path_factory.mktemp("supervisor") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "supervisor"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        pytest.skip(f"supervisor is not installed and pip could not get it: {installed.stderr}")
    return venv / "bin"


def pipeline(port: int, bin_dir: Path) -> str:
    return build_and_venv() + (
        "from deploylib.recipes import gunicorn_command, supervisord\n"
        "pipeline = Pipeline(BUILD, push(), VENV,\n"
        f"    supervisord('web', command=gunicorn_command(bind='127.0.0.1:{port}'),\n"
        f"                supervisord='{bin_dir}/supervisord',\n"
        f"                supervisorctl='{bin_dir}/supervisorctl',\n"
        f"                socket='/tmp/deploylib-test-{port}.sock'),\n"
        f"    verify(http('http://127.0.0.1:{port}/health', contains='{{release}} dep='),\n"
        "           attempts=40, wait=0.25, deadline=30),\n"
        ")\n"
    )


@pytest.fixture
def served(supervisor_bin: Path, tmp_path: Path) -> Iterator[tuple[PyApp, int]]:
    port = free_port()
    project = PyApp(tmp_path / "p", pipeline(port, supervisor_bin))
    yield project, port
    conf = project.srv / "shared" / "supervisor" / "supervisord.conf"
    if conf.exists():
        subprocess.run(
            [str(supervisor_bin / "supervisorctl"), "-c", str(conf), "shutdown"],
            capture_output=True,
            timeout=60,
        )


def test_started_restarted_on_each_release_and_put_back(
    served: tuple[PyApp, int], supervisor_bin: Path
) -> None:
    project, port = served
    shared = project.srv / "shared"
    first = project.deploy()
    assert first.returncode == 0, first.stdout + first.stderr
    _, release_1, dep = get(port, "/health").split()
    assert dep == "dep=1"
    assert Path(f"/tmp/deploylib-test-{port}.sock").is_socket()
    supervisord_pid = (shared / "supervisor" / "supervisord.pid").read_text().strip()

    project.set_dep("2")
    second = project.deploy()
    assert second.returncode == 0, second.stdout + second.stderr
    _, release_2, dep = get(port, "/health").split()
    assert release_2 != release_1 and dep == "dep=2"
    # the same supervisord: only the program was restarted
    assert (shared / "supervisor" / "supervisord.pid").read_text().strip() == supervisord_pid

    project.set_dep("3", broken=True)
    third = project.deploy()
    assert third.returncode == 1, third.stdout + third.stderr
    assert {get(port, "/").strip() for _ in range(10)} == {f"ok {release_2} dep=2"}
    status = subprocess.run(
        [
            str(supervisor_bin / "supervisorctl"),
            "-c",
            str(shared / "supervisor" / "supervisord.conf"),
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "web" in status.stdout and "RUNNING" in status.stdout
