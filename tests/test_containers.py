"""Containers on blue-green slots behind a real nginx: a real dockerd and a real registry,
started by the tests (tests/testbed/docker.py), images built FROM a base made offline.

The project deploys to this machine (``hosts = ["local"]``): the controller builds the image,
pushes it to the registry on 127.0.0.1, the host pulls it, and ``container()`` runs it on the
idle slot with host networking; nginx's upstream file says which slot takes the requests.
Requests go through nginx the whole time, a fresh connection each, and none may fail."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.testbed.docker import Dockerd, Registry, answer, dockerd, registry
from tests.testbed.load import Load, free_port, get, settles_on
from tests.testbed.nginx import Nginx, nginx
from tests.testbed.slots import upstream_servers

pytestmark = pytest.mark.slow

DOCKERFILE = """\
FROM deploylib-base:1
ARG RELEASE
ARG NOTE
COPY . /src
RUN mkdir -p /www && echo "release $RELEASE" > /www/index.html && echo "$NOTE" > /www/note \\
    && (test -e /src/BROKEN || echo "ok $RELEASE" > /www/health)
CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/greeting; exec httpd -f -p 127.0.0.1:$PORT -h /www"]
"""

PIPELINE = """\
from deploylib import Pipeline, build, http, push, run, verify
from deploylib.recipes import container

pipeline = Pipeline(
    build(
        image="{{app}}:{{release}}",
        context="app",
        build_args={{"RELEASE": "{{release}}", "NOTE": {hostile!r}}},
    ),
    push({push_hooks}),
    container(args=["--init"], stop_timeout=5),
    verify(
        http("http://127.0.0.1:{{port}}/health", contains="{{release}}"), attempts=100, wait=0.1
    ),
)
"""

TOML = """\
app = "demo"
deploy_to = "/srv/demo"
keep_releases = {keep}
registry = "{registry}"

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
"""


class Containers:
    """A project whose releases are images, deployed to this machine behind ``proxy``."""

    def __init__(
        self, root: Path, daemon: Dockerd, reg: Registry, proxy: Nginx, blue: int, green: int
    ) -> None:
        self.project = Project(root)
        self.daemon = daemon
        self.registry = reg
        self.proxy = proxy
        self.ports = {"blue": blue, "green": green}
        #: more of the deploylib program's environment
        self.env: dict[str, str] = {}
        self.project.write("app/Dockerfile", DOCKERFILE)
        self.project.write(".env", 'GREETING="hello from the env file"\n')
        self.pipeline()
        self.configure()

    def pipeline(self, push_hooks: str = "") -> None:
        self.project.write(
            "pipelines/web.py", PIPELINE.format(push_hooks=push_hooks, hostile=self.hostile)
        )

    @property
    def pwned(self) -> Path:
        return self.project.root / "PWNED"

    @property
    def hostile(self) -> str:
        """A build argument a shell would run: it must reach docker as one word."""
        return f"$(touch {self.pwned}) `touch {self.pwned}`; touch {self.pwned}"

    def configure(self, keep: int = 5) -> None:
        self.project.write(
            "deploy.toml",
            TOML.format(
                keep=keep,
                registry=self.registry.address,
                blue=self.ports["blue"],
                green=self.ports["green"],
                upstream=self.proxy.upstream,
                check=self.proxy.check.replace('"', '\\"'),
                reload=self.proxy.reload.replace('"', '\\"'),
            ),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.daemon.env, **self.env}
        return self.project.cli(*args, "--env", "dev", env=env, timeout=300)

    def record(self) -> dict[str, object]:
        path = self.project.target / ".deploylib" / "slots.json"
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def serving(self) -> str:
        return get(self.proxy.port, "/").split()[1]

    def serves(self, release: str | None) -> bool:
        """Whether the proxy serves ``release`` (within moments: see ``settles_on``)."""
        return release is not None and settles_on(self.serving, release)

    def container_id(self, slot: str) -> str | None:
        result = self.daemon.docker("inspect", "--format", "{{.Id}}", f"demo-{slot}", check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def labels(self, slot: str) -> dict[str, str]:
        out = self.daemon.docker(
            "inspect", "--format", "{{json .Config.Labels}}", f"demo-{slot}"
        ).stdout
        labels: dict[str, str] = json.loads(out)
        return labels

    def revision(self, release: str) -> list[str]:
        path = self.project.target / "releases" / release / "REVISION"
        return path.read_text().splitlines()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Dockerd]:
    with dockerd() as made:
        made.base_image()
        yield made


@contextlib.contextmanager
def containers_bed(
    root: Path, daemon: Dockerd, users: dict[str, str] | None = None
) -> Iterator[Containers]:
    """A registry (behind basic auth with ``users``), nginx, and a project in ``root``."""
    blue, green = free_port(), free_port()
    with registry(root / "registry", users) as reg, nginx(root, blue) as proxy:
        try:
            yield Containers(root / "proj", daemon, reg, proxy, blue, green)
        finally:
            daemon.remove_all_containers()


@pytest.fixture
def bed(tmp_path: Path, daemon: Dockerd) -> Iterator[Containers]:
    with containers_bed(tmp_path, daemon) as made:
        yield made


def test_images_deploy_roll_back_and_fail_on_slots_without_a_failed_request(
    bed: Containers,
) -> None:
    first = bed.cli("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    r1 = bed.project.current()
    assert r1 and bed.serves(r1)
    assert not bed.pwned.exists()  # the hostile build argument was one argv word
    assert get(bed.proxy.port, "/note").strip() == bed.hostile  # and arrived as it was
    ref = f"{bed.registry.address}/demo:{r1}"
    revision = bed.revision(r1)
    assert revision[0].split()[0] == r1 and revision[1] == f"image {ref}"
    assert revision[2].startswith("digest sha256:")
    assert (bed.project.target / "releases" / r1 / "IMAGE").read_text() == ref + "\n"
    assert r1 in bed.registry.tags("demo")
    assert bed.labels("blue") == {
        "deploylib.app": "demo",
        "deploylib.release": r1,
        "deploylib.slot": "blue",
    }
    # the release's variables reach the container through its env file
    assert get(bed.proxy.port, "/greeting").strip() == "hello from the env file"
    env_docker = bed.project.target / "releases" / r1 / ".env.docker"
    assert env_docker.stat().st_mode & 0o777 == 0o600

    with Load(bed.proxy.port, max_requests=500_000, max_seconds=240) as load:
        load.wait_for_answers(10)
        second = bed.cli("deploy")
        assert second.returncode == 0, second.stdout + second.stderr
        r2 = bed.project.current()
        assert r2 != r1 and bed.serves(r2)
        assert upstream_servers(bed.proxy) == [f"server 127.0.0.1:{bed.ports['green']};"]
        blue_id = bed.container_id("blue")
        assert blue_id and bed.daemon.running("demo-blue")  # idle, running: instant rollback
        load.wait_for_answers(10)

        back = bed.cli("rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        assert bed.serves(r1) and bed.container_id("blue") == blue_id  # a proxy switch
        load.wait_for_answers(10)

        # the next deploy stops green (r2, idle) after its drain and starts r3 there
        third = bed.cli("deploy")
        assert third.returncode == 0, third.stdout + third.stderr
        r3 = bed.project.current()
        assert bed.serves(r3) and bed.record()["live"] == "green"
        assert bed.labels("green")["deploylib.release"] == r3
        load.wait_for_answers(10)

        # blue's container (r1, idle) is gone: rollback starts r1's image again, still here
        bed.daemon.docker("rm", "-f", "demo-blue")
        rolled = bed.cli("rollback")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "does not answer" in rolled.stdout + rolled.stderr
        assert bed.serves(r1) and bed.container_id("blue") not in (None, blue_id)
        assert bed.labels("blue")["deploylib.release"] == r1
        load.wait_for_answers(10)

        # a release that never becomes healthy: started on green, never takes a request
        bed.project.write("app/BROKEN", "")
        broken = bed.cli("deploy")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert bed.serves(r1) and bed.project.current() == r1
        assert bed.record()["live"] == "blue"
        assert bed.container_id("green") is None  # the unhealthy release was stopped
        sick = str(bed.project.log()[-1]["release"])
        assert sick not in {r1, r2, r3} and sick not in bed.project.release_dirs()
        assert sick not in bed.daemon.images(f"{bed.registry.address}/demo")  # its image went
        load.wait_for_answers(10)

    assert load.failures == [], load.failures[:5]
    assert set(load.bodies) == {f"release {r}" for r in (r1, r2, r3)}
    print(f"{sum(load.bodies.values())} requests through nginx, 0 failed")

    status = bed.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [row] = json.loads(status.stdout)
    assert row["current"] == r1 and row["slots"]["live"] == "blue"
    assert row["image"] == f"{bed.registry.address}/demo:{r1}"
    history = bed.cli("releases", "--json")
    assert history.returncode == 0, history.stdout + history.stderr
    deployed = [r for r in json.loads(history.stdout) if r["event"] == "deploy"]
    assert [r["image"].rsplit(":", 1)[1] for r in deployed if r["outcome"] == "success"] == [
        r1,
        r2,
        r3,
    ]
    log = bed.project.log()
    assert all(str(e["digest"]).startswith("sha256:") for e in log if e.get("image"))


def test_a_pull_that_fails_switches_nobody(bed: Containers) -> None:
    first = bed.cli("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    r1 = bed.project.current()
    before = bed.project.release_dirs()
    # the registry goes away after the push, before the host pulls
    assert bed.registry.process is not None
    bed.pipeline(push_hooks=f'before=run("kill {bed.registry.process.pid}")')

    failed = bed.cli("deploy")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "could not pull" in failed.stdout + failed.stderr
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.project.release_dirs() == before  # the unfinished release was removed
    assert bed.container_id("green") is None and bed.daemon.running("demo-blue")
    assert answer(bed.ports["blue"], "/health").strip() == f"ok {r1}"


def test_cleanup_removes_old_images_and_stopped_containers_never_live_or_idle_ones(
    bed: Containers,
) -> None:
    bed.configure(keep=1)
    tags = bed.daemon.images
    repository = f"{bed.registry.address}/demo"
    made = []
    for _ in range(2):
        done = bed.cli("deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        made.append(bed.project.current())
    r1, r2 = made
    # nothing beyond the rollback target (r1, idle on blue) and current (r2, live on green)
    assert {r1, r2} <= tags(repository) and bed.project.release_dirs() == {r1, r2}
    # a stopped container of r1, as a crash would leave it
    bed.daemon.docker(
        "create",
        "--name",
        "stale",
        "--label",
        "deploylib.app=demo",
        "--label",
        f"deploylib.release={r1}",
        f"{repository}:{r1}",
    )

    third = bed.cli("deploy")

    assert third.returncode == 0, third.stdout + third.stderr
    r3 = bed.project.current()
    assert bed.project.release_dirs() == {r2, r3}
    assert r1 not in tags(repository) and {r2, r3} <= tags(repository)
    assert bed.daemon.containers(f"label=deploylib.release={r1}") == []
    assert bed.daemon.running("demo-blue") and bed.daemon.running("demo-green")  # r3 and r2
    assert bed.labels("green")["deploylib.release"] == r2

    fourth = bed.cli("deploy")

    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    r4 = bed.project.current()
    assert bed.project.release_dirs() == {r3, r4}
    assert r2 not in tags(repository) and {r3, r4} <= tags(repository)
    assert bed.labels("blue")["deploylib.release"] == r3  # the rollback target, still running
    back = bed.cli("rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert bed.serves(r3)


def test_registry_credentials_from_the_env_file_log_in_by_stdin_and_out_at_the_end(
    tmp_path: Path, daemon: Dockerd
) -> None:
    password = "pw-4f9c1e-never-printed"
    with containers_bed(tmp_path, daemon, users={"robot": password}) as bed:
        docker_config = tmp_path / "docker-config"
        docker_config.mkdir()
        bed.env["DOCKER_CONFIG"] = str(docker_config)
        assert bed.registry.status() == 401
        # without credentials the registry refuses the push: no host is touched
        refused = bed.cli("deploy")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "no basic auth credentials; nothing was changed" in refused.stdout
        assert bed.project.current() is None and bed.project.release_dirs() == set()

        bed.project.write(
            ".env",
            f'GREETING="hi"\nREGISTRY_USERNAME="robot"\nREGISTRY_PASSWORD="{password}"\n',
        )
        done = bed.cli("deploy", "--verbose")

        assert done.returncode == 0, done.stdout + done.stderr
        r1 = bed.project.current()
        assert r1 and bed.serves(r1) and r1 in bed.registry.tags("demo")
        # logged out again: no credentials stay in docker's config
        config = docker_config / "config.json"
        auths = json.loads(config.read_text()).get("auths", {}) if config.exists() else {}
        assert bed.registry.address not in auths
        # the password never shows: not in the output, the run's log, or a release's files
        logs = [p.read_text() for p in (bed.project.root / ".deploylib").rglob("*.log")]
        assert logs and all(password not in text for text in [done.stdout, done.stderr, *logs])
        env_docker = bed.project.target / "releases" / r1 / ".env.docker"
        assert "REGISTRY" not in env_docker.read_text()
        assert get(bed.proxy.port, "/greeting").strip() == "hi"
