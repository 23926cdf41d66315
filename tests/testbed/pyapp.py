"""A Python web app deployed with a virtual environment per release, for the recipe tests.

The app answers ``ok <release> dep=<version>`` on ``/health`` and ``/``: the release it runs
(from REVISION, through its own resolved path) and the version of ``dep``, a tiny package
installed into the release's venv only, so an answer shows which venv the serving process
imports from. Each release's ``.venv`` is a link to a venv kept by content under
``<deploy_to>/.deploylib/python/`` (as ``python_env`` makes them), made with the interpreter
running the tests and ``--system-site-packages`` (gunicorn comes from there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import program

APP = """\
import os
from pathlib import Path

import dep

RELEASE = (Path(__file__).resolve().parent / "REVISION").read_text().split()[0]
BROKEN = Path(__file__).resolve().parent.joinpath("BROKEN").exists()


def app(environ, start_response):
    body = f"ok {RELEASE} dep={dep.VERSION}\\n".encode()
    status = "500 Broken" if BROKEN and environ.get("PATH_INFO") == "/health" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

#: a run(...) step's command: the release's venv, by the content of dep/ (made once per content)
VENV = (
    "h=$(cat dep/__init__.py | sha256sum | cut -c1-16); v={deploy_to}/.deploylib/python/$h; "
    "if [ ! -x $v/bin/python ]; then "
    f"rm -rf $v.tmp && {sys.executable} -m venv --without-pip --system-site-packages $v.tmp && "
    'cp -r dep "$($v.tmp/bin/python -c '
    '\'import sysconfig; print(sysconfig.get_path("purelib"))\')" && mv $v.tmp $v; fi; '
    "ln -sfn $v .venv"
)


class PyApp:
    """A project in ``root`` deploying ``src/`` to ``root/srv`` on this machine."""

    def __init__(self, root: Path, pipeline: str) -> None:
        self.root = root
        self.srv = root / "srv"
        (root / "src" / "dep").mkdir(parents=True)
        (root / "src" / "app.py").write_text(APP)
        (root / "pipelines").mkdir()
        (root / "pipelines" / "web.py").write_text(pipeline)
        (root / "deploy.toml").write_text(
            f'app = "pyapp"\ndeploy_to = "{self.srv}"\nshared_dirs = ["log"]\n'
            '[environments.dev]\nhosts = ["local"]\n'
        )
        self.set_dep("1")

    def set_dep(self, version: str, *, broken: bool = False) -> None:
        (self.root / "src" / "dep" / "__init__.py").write_text(f"VERSION = {version!r}\n")
        marker = self.root / "src" / "BROKEN"
        if broken:
            marker.write_text("")
        elif marker.exists():
            marker.unlink()

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            program("deploy", "--env", "dev"),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "CI": "true"},
        )


def build_and_venv() -> str:
    return (
        "from deploylib import Pipeline, build, http, push, run, verify\n"
        'BUILD = build("tar -czf {artifact} --exclude=__pycache__ -C src .")\n'
        f"VENV = run({VENV!r}, cwd='{{release_path}}', name='venv')\n"
    )


def stop(pid: int, timeout: float = 30) -> None:
    """TERM ``pid`` and wait until it is gone (or a zombie)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.05)
