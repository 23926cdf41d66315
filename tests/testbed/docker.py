"""A real dockerd and a real registry for the container tests, both on this machine, both
started by the tests and stopped by their PIDs.

dockerd (Debian's docker.io) runs with its state in a temp dir, its own socket, and no network
of its own (``--bridge=none``, no iptables, no forwarding): containers use ``--network host``.
The registry (Debian's docker-registry) listens on 127.0.0.1 only, optionally behind htpasswd
(bcrypt) basic auth. No image hub is reachable: ``base_image`` makes one offline with
``docker import`` of a root tree holding busybox-static."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.testbed.load import free_port

DOCKERD = "/usr/sbin/dockerd"
REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
#: the applets the base image links to busybox
APPLETS = (
    "sh",
    "httpd",
    "cat",
    "echo",
    "sleep",
    "ls",
    "mkdir",
    "env",
    "test",
    "false",
    "true",
    "wget",
)
BASE_IMAGE = "deploylib-base:1"


def missing() -> str | None:
    """Why the docker tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for path, package in ((DOCKERD, "docker.io"), (REGISTRY, "docker-registry")):
        if not Path(path).exists():
            return f"{path} is missing (.ci/run installs {package})"
    if shutil.which("docker") is None:
        return "the docker client is missing (.ci/run installs docker.io)"
    if not Path(BUSYBOX).exists():
        return f"{BUSYBOX} is missing (.ci/run installs busybox-static)"
    return None


def wait_for(ready: object, what: str, timeout: float, log: Path) -> None:
    """Poll ``ready()`` every 0.05 s until it holds; fail with the end of ``log``."""
    assert callable(ready)
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{what} within {timeout:g} s:\n{text}")
        time.sleep(0.05)


def answer(port: int, path: str, timeout: float = 30, host: str = "127.0.0.1") -> str:
    """The body of a GET of ``path`` on ``host``:``port`` (loopback, or a test host's address),
    waited for until it answers 200."""
    end = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode()
            if response.status == 200:
                return body
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        assert time.monotonic() < end, f"{host}:{port}{path} never answered 200 in {timeout:g} s"
        time.sleep(0.05)


@dataclass
class Dockerd:
    """One dockerd; ``env`` points a docker client at it."""

    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}"}

    def docker(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The docker client against this daemon."""
        raw = subprocess.run(
            ["docker", *args],
            env={**os.environ, **self.env},
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check:
            assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result

    def lines(self, *args: str) -> list[str]:
        return self.docker(*args).stdout.split()

    def running(self, name: str) -> bool:
        result = self.docker("inspect", "--format", "{{.State.Running}}", name, check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def images(self, repository: str) -> set[str]:
        """The tags of ``repository`` this daemon has."""
        out = self.docker("images", "--format", "{{.Tag}}", repository).stdout
        return {tag for tag in out.split() if tag != "<none>"}

    def containers(self, *filters: str) -> list[str]:
        """Names of the containers (running or not) matching every ``label=...`` filter."""
        args = [arg for f in filters for arg in ("--filter", f)]
        return self.lines("ps", "-a", "--format", "{{.Names}}", *args)

    def base_image(self) -> str:
        """``BASE_IMAGE``: busybox-static in an otherwise empty root, imported offline."""
        if self.docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        tree = self.root / "base"
        (tree / "bin").mkdir(parents=True)
        (tree / "tmp").mkdir()
        shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
        for applet in APPLETS:
            (tree / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(tree), "-c", "."], capture_output=True, check=True)
        self.docker("import", "-", BASE_IMAGE, input=tar.stdout)
        return BASE_IMAGE

    def remove_all_containers(self) -> None:
        names = self.lines("ps", "-aq")
        if names:
            self.docker("rm", "-f", *names, check=False)

    def stop(self) -> None:
        """Remove every container, then end dockerd by its PID."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_all_containers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def unmount_under(root: Path) -> None:
    """Unmount what dockerd left mounted under ``root`` (its default network namespace's
    ``nsfs``, overlays of a killed daemon), deepest first, so the directory can go."""
    prefix = f"{root}/"
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)


def state_dir() -> Path:
    """A fresh temp dir for a dockerd's state (a short path: its sockets live there)."""
    return Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))


#: what runs dockerd inside a test host's network namespace: cgroup2 mounted in its own mount
#: namespace first (without it: "Devices cgroup isn't mounted")
IN_NAMESPACE = 'mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"'


@contextlib.contextmanager
def dockerd(
    extra: Sequence[str] = (), *, root: Path | None = None, namespace: str | None = None
) -> Iterator[Dockerd]:
    """A dockerd whose state is in ``root`` (default: a fresh ``state_dir()``), in this
    machine's network namespace or in ``namespace`` (a test host's)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root = root or state_dir()
    log = root / "dockerd.log"
    inside = ["ip", "netns", "exec", namespace, "sh", "-c", IN_NAMESPACE] if namespace else []
    argv = [
        *inside,
        DOCKERD,
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "dockerd.pid"),
        "-H",
        f"unix://{root / 'docker.sock'}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--shutdown-timeout=2",
        *extra,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    daemon = Dockerd(root, process, log)
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            return daemon.docker("version", check=False, timeout=10).returncode == 0

        wait_for(up, "dockerd did not answer", 60, log)
        yield daemon
    finally:
        daemon.stop()


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: {host}:{port}
{auth}"""

AUTH = """\
auth:
  htpasswd:
    realm: deploylib-test
    path: {root}/htpasswd
"""


@dataclass
class Registry:
    """A docker-registry on 127.0.0.1; ``address`` is what deploy.toml's ``registry`` says."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)
    #: the address it listens on: loopback, or a test bridge's for hosts in namespaces
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def status(self, path: str = "/v2/") -> int:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return 0
        finally:
            connection.close()

    def tags(self, repository: str) -> list[str]:
        import base64
        import json

        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        headers = {}
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            connection.request("GET", f"/v2/{repository}/tags/list", headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                return []
            found: list[str] = json.loads(response.read()).get("tags") or []
            return found
        finally:
            connection.close()

    def start(self) -> None:
        auth = ""
        if self.users:
            import bcrypt

            lines = [
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}\n"
                for user, password in self.users.items()
            ]
            (self.root / "htpasswd").write_text("".join(lines))
            auth = AUTH.format(root=self.root)
        config = self.root / "config.yml"
        config.write_text(
            REGISTRY_CONFIG.format(root=self.root, host=self.host, port=self.port, auth=auth)
        )
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [REGISTRY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        process = self.process

        def up() -> bool:
            assert process.poll() is None, self.log.read_text(errors="replace")[-3000:]
            return self.status() in (200, 401)

        wait_for(up, "the registry did not answer", 30, self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def registry(
    root: Path, users: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Iterator[Registry]:
    """A registry in ``root`` on a free port of ``host`` (loopback, or a test bridge's address),
    behind basic auth when ``users`` are given."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root.mkdir(parents=True, exist_ok=True)
    made = Registry(root, free_port(), users=dict(users or {}), host=host)
    try:
        made.start()
        yield made
    finally:
        made.stop()
