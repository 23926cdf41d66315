"""A project deploying to this machine with the blue_green strategy behind a real nginx:
gunicorn on two slots (``deploylib.recipes.gunicorn_slots``), and what the tests and the
strategy benchmark ask of it (what each slot runs, what nginx serves)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import Project
from tests.testbed.load import free_port, get, settles_on
from tests.testbed.nginx import Nginx, nginx

APP = """\
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELEASE = (HERE / "REVISION").read_text().split()[0]


def app(environ, start_response):
    sick = (HERE.parent.parent / "shared" / f"SICK-{RELEASE}").exists()
    broken = (HERE / "BROKEN").exists() or sick
    if environ.get("PATH_INFO") == "/health":
        status, body = ("500 Broken", "broken") if broken else ("200 OK", f"ok {RELEASE}")
    else:
        status, body = "200 OK", f"release {RELEASE}"
    data = (body + "\\n").encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"""

PIPELINE = """\
from deploylib import Pipeline, build, http, push, verify
from deploylib.recipes import gunicorn_slots

pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    gunicorn_slots("app:app", workers=2, args=["--graceful-timeout", "5"]),
    verify(http("http://127.0.0.1:{port}/health", contains="{release}"), attempts=60, wait=0.1),
)
"""

TOML = """\
app = "demo"
deploy_to = "/srv/demo"
keep_releases = 5

[environments.dev]
hosts = ["local"]
deploy_to = "target"
command_timeout = 60

[environments.dev.strategy]
kind = "blue_green"
ports = [{blue}, {green}]
upstream_file = "{upstream}"
proxy_check = "{check}"
proxy_reload = "{reload}"
drain = 1
{extra}
"""


class Slots:
    """A project deploying to this machine behind ``proxy``, and what its slots run."""

    def __init__(self, root: Path, proxy: Nginx, blue: int, green: int, extra: str = "") -> None:
        self.project = Project(root)
        self.proxy = proxy
        self.ports = {"blue": blue, "green": green}
        self.project.write("app/app.py", APP)
        self.project.write("pipelines/web.py", PIPELINE)
        self.configure(extra)

    def configure(self, extra: str = "") -> None:
        self.project.write(
            "deploy.toml",
            TOML.format(
                blue=self.ports["blue"],
                green=self.ports["green"],
                upstream=self.proxy.upstream,
                check=self.proxy.check.replace('"', '\\"'),
                reload=self.proxy.reload.replace('"', '\\"'),
                extra=extra,
            ),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.project.cli(*args, "--env", "dev")

    def record(self) -> dict[str, object]:
        path = self.project.target / ".deploylib" / "slots.json"
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def pid(self, slot: str) -> int | None:
        path = self.project.target / "shared" / f"gunicorn-{slot}.pid"
        return int(path.read_text()) if path.exists() else None

    def serving(self) -> str:
        return get(self.proxy.port, "/").split()[1]

    def serves(self, release: str | None) -> bool:
        """Whether the proxy serves ``release`` (within moments: see ``settles_on``)."""
        return release is not None and settles_on(self.serving, release)

    def stop_all(self) -> None:
        for slot in self.ports:
            pid = self.pid(slot)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGTERM)


def closed_within(port: int, seconds: float) -> None:
    """Wait until nothing listens on ``port`` any more."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        assert time.monotonic() < deadline, f"port {port} still answers"
        time.sleep(0.05)


def upstream_servers(proxy: Nginx) -> list[str]:
    return [line for line in proxy.upstream.read_text().splitlines() if line.startswith("server")]


@contextlib.contextmanager
def slots_behind_nginx(root: Path, extra: str = "") -> Iterator[Slots]:
    """nginx and a blue-green project in ``root``; every slot's gunicorn stopped at the end."""
    blue, green = free_port(), free_port()
    with nginx(root, blue) as proxy:
        made = Slots(root / "proj", proxy, blue, green, extra)
        try:
            yield made
        finally:
            made.stop_all()


def event_of(events: Path, process: subprocess.Popen[str], kind: str) -> dict[str, object]:
    """The first event of ``kind`` the deploy writing ``events`` emitted (waited for)."""
    deadline = time.monotonic() + 60
    while True:
        if events.exists():
            for line in events.read_text().splitlines():
                record: dict[str, object] = json.loads(line)
                if record["event"] == kind:
                    return record
        assert process.poll() is None, process.communicate(timeout=5)
        assert time.monotonic() < deadline, f"no {kind} event"
        time.sleep(0.02)
