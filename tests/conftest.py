"""Shared fixtures: a throw-away project directory with its own deploy.toml and pipelines."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deploylib import actions
from deploylib.backends.ssh import SSHBackend
from deploylib.config import SSHSettings
from deploylib.hosts import Host
from deploylib.reporting import RecordingReporter
from deploylib.runner import Outcome
from tests.testbed import sshhosts
from tests.testbed.sshhosts import TestHosts

# Ctrl-C and a dropped connection's SIGHUP are part of what the tests check (sent to this
# process, to a deploylib it started, or to a shell script's traps): a run started in the
# background by a non-interactive shell inherits SIGINT ignored, and one under nohup SIGHUP,
# which this process and every command it starts would keep. They are handled again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

REPO = Path(__file__).resolve().parents[1]

BASIC_TOML = """\
app = "demo"
deploy_to = "/srv/demo"
keep_releases = 3
shared_dirs = ["log"]
shared_files = [".env"]

[environments.dev]
hosts = ["local"]
deploy_to = "target"
"""

# A pipeline whose behaviour the app's own files decide, so tests can make any step fail:
# FAIL_PREPARE makes the prepare step fail, BROKEN makes verify fail.
BASIC_PIPELINE = """\
from deploylib import Pipeline, build, push, run, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    run("test ! -e FAIL_PREPARE", cwd="{release_path}"),
    switch(restart="echo {release} >> {shared_path}/restarts"),
    verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0),
)
"""


_REVISIONS = itertools.count(1)


def program(*args: str) -> list[str]:
    """The argv of the deploylib program. A ``deploy`` that names no revision gets one of its
    own, as each commit would: two deploys within one second then get release ids of their own
    (an id is the second plus the short revision), and no test has to wait for the clock."""
    if args[:1] == ("deploy",) and "--revision" not in args and "--dry-run" not in args:
        args = (*args, "--revision", f"t{next(_REVISIONS):06d}")
    return [sys.executable, "-m", "deploylib", *args]


def start_cli(cwd: Path, *args: str, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start the deploylib program in ``cwd`` in the background, its output captured."""
    return subprocess.Popen(
        [*prefix, *program(*args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 30) -> None:
    """Wait until ``path`` exists; fail with the process's output if it ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert path.exists(), process.communicate(timeout=5)


SLOW_PIPELINE = """\
from deploylib import Pipeline, build, push, run, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    run("touch {{deploy_to}}/prepare-started && sleep {seconds}"),
    switch(),
    verify(command("true")),
)
"""


class Project:
    """A project directory: deploy.toml, pipelines/, app/ and helpers to deploy it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._clock = itertools.count()

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    @property
    def target(self) -> Path:
        return self.root / "target"

    def current(self) -> str | None:
        link = self.target / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def release_dirs(self) -> set[str]:
        releases = self.target / "releases"
        return {p.name for p in releases.iterdir()} if releases.is_dir() else set()

    def log(self) -> list[dict[str, object]]:
        path = self.target / ".deploylib" / "releases.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def append_log(self, entry: Mapping[str, object]) -> None:
        """Add a line to the target's release log, as something on the host might."""
        with (self.target / ".deploylib" / "releases.jsonl").open("a") as log:
            log.write(json.dumps(entry) + "\n")

    def hold_lock(self, owner: Mapping[str, object]) -> Path:
        """Lock the target as another deploy would: the lock directory and its owner.json."""
        lock = self.target / ".deploylib" / "lock"
        lock.mkdir(parents=True)
        (lock / "owner.json").write_text(json.dumps(owner))
        return lock

    def clock(self) -> datetime:
        """A clock one minute further on each call: release ids never collide."""
        return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=next(self._clock))

    def deploy(
        self, env: str = "dev", *, revision: str = "abc1234", **kwargs: str | None
    ) -> tuple[Outcome, RecordingReporter]:
        reporter = RecordingReporter()
        loaded = actions.load(self.root / "deploy.toml", env, **kwargs)
        outcome = actions.deploy(loaded, reporter=reporter, revision=revision, clock=self.clock)
        return outcome, reporter

    def rollback(self, env: str = "dev", to: str | None = None) -> Outcome:
        loaded = actions.load(self.root / "deploy.toml", env)
        return actions.rollback(loaded, reporter=RecordingReporter(), to=to, clock=self.clock)

    def start_slow_deploy(self, seconds: int, *prefix: str) -> subprocess.Popen[str]:
        """Start a deploy whose prepare step sleeps; return once it is inside that step."""
        self.write("pipelines/slow.py", SLOW_PIPELINE.format(seconds=seconds))
        marker = self.target / "prepare-started"
        marker.unlink(missing_ok=True)
        process = start_cli(
            self.root, "deploy", "--env", "dev", "--pipeline", "slow", prefix=prefix
        )
        wait_for(marker, process)
        return process

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the deploylib program in this project, as a user would."""
        return subprocess.run(
            program(*args),
            cwd=self.root,
            env={**os.environ, "CI": "true", **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "proj")
    p.write("deploy.toml", BASIC_TOML)
    p.write("pipelines/web.py", BASIC_PIPELINE)
    p.write("app/index.txt", "hello\n")
    yield p


class Webhook:
    """A webhook receiver on loopback: what deploylib POSTed to ``url``, in order."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        received: list[dict[str, object]] = []
        self.received = received

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop answering: from now on a POST finds nobody (the port is closed)."""
        if self.server.fileno() != -1:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


# ---------------------------------------------------------------------------- SSH test hosts


class Fleet:
    """Test hosts plus a project whose environment ``fleet`` deploys to all of them."""

    def __init__(self, hosts: TestHosts, project: Project) -> None:
        self.hosts = hosts
        self.project = project

    def configure(
        self,
        *,
        roles: dict[int, list[str]] | None = None,
        extra_ssh: str = "",
        known_hosts: str | None = None,
    ) -> None:
        entries = []
        for host in self.hosts.hosts:
            host_roles = (roles or {}).get(host.index, [])
            entries.append(
                f'{{ address = "{host.address}", user = "root", name = "{host.name}", '
                f"roles = {host_roles!r} }}".replace("'", '"')
            )
        self.project.write(
            "deploy.toml",
            BASIC_TOML
            + "\n[environments.fleet]\nhosts = [\n  "
            + ",\n  ".join(entries)
            + ",\n]\n"
            + 'deploy_to = "/srv/demo"\n'
            + "[environments.fleet.ssh]\n"
            + f'key_file = "{self.hosts.client_key}"\n'
            + f'known_hosts = "{known_hosts or self.hosts.known_hosts}"\n'
            + "connect_timeout = 3\nchannel_timeout = 3\nalive_interval = 1\nalive_count_max = 3\n"
            + extra_ssh,
        )

    def backend(self, index: int = 1, *, default_timeout: float = 30, **ssh: Any) -> SSHBackend:
        """deploylib's SSH backend for host ``index`` as user root, with this bed's key and
        known_hosts and quick timeouts (``ssh`` overrides settings); the caller closes it."""
        options: dict[str, Any] = {"connect_timeout": 5, "channel_timeout": 5, **ssh}
        settings = SSHSettings(
            key_file=str(self.hosts.client_key),
            known_hosts=str(self.hosts.known_hosts),
            **options,
        )
        host = self.hosts.host(index)
        return SSHBackend(
            Host(host.name, host.address, user="root"),
            settings,
            project_dir=self.project.root,
            default_timeout=default_timeout,
        )

    def edit_pipeline(self, old: str, new: str) -> None:
        """Change pipelines/web.py: replace ``old`` (which must be there) by ``new``."""
        path = self.project.root / "pipelines" / "web.py"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))

    def current(self, index: int) -> str | None:
        link = self.hosts.host(index).srv / "demo" / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def currents(self) -> dict[str, str | None]:
        return {h.name: self.current(h.index) for h in self.hosts.hosts}

    def release_dirs(self, index: int) -> set[str]:
        releases = self.hosts.host(index).srv / "demo" / "releases"
        return {p.name for p in releases.iterdir()} if releases.is_dir() else set()

    def locked(self, index: int) -> bool:
        return (self.hosts.host(index).srv / "demo" / ".deploylib" / "lock").exists()

    def connections(self) -> list[int]:
        return [h.connections() for h in self.hosts.hosts]


@pytest.fixture
def fleet_of(tmp_path: Path) -> Iterator[Callable[[int], Fleet]]:
    """``fleet_of(k)``: k SSH hosts in network namespaces and a project deploying to them."""
    reason = sshhosts.missing()
    if reason:
        pytest.skip(reason)
    made: list[TestHosts] = []

    def make(count: int) -> Fleet:
        hosts = TestHosts(count, tmp_path / f"hosts{len(made)}")
        made.append(hosts)
        hosts.up()
        project = Project(tmp_path / f"proj{len(made)}")
        project.write("pipelines/web.py", BASIC_PIPELINE)
        project.write("app/index.txt", "hello\n")
        fleet = Fleet(hosts, project)
        fleet.configure()
        return fleet

    yield make
    for hosts in made:
        hosts.down()
