"""Releases as a Docker Swarm service (``orchestrator = "swarm"``) on a real single-node swarm:
a real dockerd made a swarm manager, a real registry, and, for the blue-green path, a real
nginx in front of the service's tasks on the host's network.

The project deploys to this machine (``hosts = ["local"]``, the manager): the controller builds
and pushes the image, the manager pulls it, and ``service()`` makes the swarm service run it
(create, update with ``start-first``, rollback to the previous spec), following swarm task by
task. Requests go through nginx the whole time, a fresh connection each, and none may fail."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.testbed.docker import Dockerd, Registry, dockerd, registry
from tests.testbed.load import Load, free_port, get, settles_on
from tests.testbed.nginx import Nginx, nginx
from tests.testbed.slots import upstream_servers

pytestmark = pytest.mark.slow

DOCKERFILE = """\
FROM deploylib-base:1
ARG RELEASE
COPY . /src
RUN mkdir -p /www && echo "release $RELEASE" > /www/index.html \\
    && (test -e /src/BROKEN || test -e /src/WRONG || echo "ok $RELEASE" > /www/health) \\
    && (test ! -e /src/WRONG || echo "ok" > /www/health)
CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/greeting; exec httpd -f -p 127.0.0.1:$PORT -h /www"]
"""

PIPELINE = """\
from deploylib import Pipeline, build, http, push, verify
from deploylib.recipes import service

pipeline = Pipeline(
    build(image="{app}:{release}", context="app", build_args={"RELEASE": "{release}"}),
    push(),
    service(
        args=["--network", "host", "--init"],
        health="wget -q -O /dev/null http://127.0.0.1:$PORT/health",
        health_interval=0.5,
        health_retries=2,
    ),
    verify(http("http://127.0.0.1:@PORT@/health", contains="{release}"), attempts=20, wait=0.2),
)
"""

TOML = """\
app = "demo"
deploy_to = "/srv/demo"
registry = "{registry}"

[environments.dev]
hosts = ["local"]
deploy_to = "target"
command_timeout = 120
orchestrator = "swarm"

[environments.dev.swarm]
replicas = 1
monitor = 2
timeout = 90
{order}{strategy}"""

BLUE_GREEN = """
[environments.dev.strategy]
kind = "blue_green"
ports = [{blue}, {green}]
upstream_file = "{upstream}"
proxy_check = "{check}"
proxy_reload = "{reload}"
"""


class Swarm:
    """A project whose releases run as the swarm service ``demo``."""

    def __init__(self, root: Path, daemon: Dockerd, reg: Registry, proxy: Nginx | None) -> None:
        self.project = Project(root)
        self.daemon = daemon
        self.registry = reg
        self.proxy = proxy
        self.ports = {"blue": free_port(), "green": free_port()}
        if proxy is not None:
            self.ports["blue"] = int(upstream_servers(proxy)[0].split(":")[1].rstrip(";"))
        self.port = free_port()  # in place: the one port the tasks listen on
        self.project.write("app/Dockerfile", DOCKERFILE)
        env = 'GREETING="hello from the env file"\n'
        if proxy is None:
            env += f"PORT={self.port}\n"
        self.project.write(".env", env)
        check = "{port}" if proxy is not None else str(self.port)
        self.project.write("pipelines/web.py", PIPELINE.replace("@PORT@", check))
        strategy = ""
        if proxy is not None:
            strategy = BLUE_GREEN.format(
                blue=self.ports["blue"],
                green=self.ports["green"],
                upstream=proxy.upstream,
                check=proxy.check.replace('"', '\\"'),
                reload=proxy.reload.replace('"', '\\"'),
            )
        self.project.write(
            "deploy.toml",
            TOML.format(
                registry=reg.address,
                strategy=strategy,
                # in place, one port on the host's network: the old task must go first
                order="" if proxy is not None else 'order = "stop-first"\n',
            ),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.project.cli(*args, "--env", "dev", env=self.daemon.env, timeout=300)

    def spec(self, template: str) -> str:
        return self.daemon.docker("service", "inspect", "--format", template, "demo").stdout.strip()

    def running_release(self) -> str:
        return self.spec('{{index .Spec.Labels "deploylib.release"}}')

    def tasks(self) -> list[str]:
        """The IDs of the tasks swarm wants running."""
        return self.daemon.lines("service", "ps", "-q", "--filter", "desired-state=running", "demo")

    def serving(self, port: int | None = None) -> str:
        return get(port or (self.proxy.port if self.proxy else self.port), "/").split()[1]

    def serves(self, release: str | None) -> bool:
        """Whether the proxy serves ``release`` (within moments: see ``settles_on``)."""
        return release is not None and settles_on(self.serving, release)


@pytest.fixture(scope="module")
def manager() -> Iterator[Dockerd]:
    with dockerd() as made:
        made.base_image()
        made.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        yield made


@contextlib.contextmanager
def swarm_bed(root: Path, daemon: Dockerd, *, proxied: bool) -> Iterator[Swarm]:
    with registry(root / "registry") as reg, contextlib.ExitStack() as stack:
        proxy = stack.enter_context(nginx(root, free_port())) if proxied else None
        try:
            yield Swarm(root / "proj", daemon, reg, proxy)
        finally:
            daemon.docker("service", "rm", "demo", check=False)


def test_a_swarm_service_behind_nginx_deploys_rolls_back_and_keeps_old_tasks_for_a_sick_release(
    tmp_path: Path, manager: Dockerd
) -> None:
    with swarm_bed(tmp_path, manager, proxied=True) as bed:
        assert bed.proxy is not None
        blue, green = bed.ports["blue"], bed.ports["green"]
        first = bed.cli("deploy", "--verbose")
        assert first.returncode == 0, first.stdout + first.stderr
        r1 = bed.project.current()
        assert r1 and bed.serves(r1) and bed.running_release() == r1
        assert "creating the service demo" in first.stdout
        assert bed.spec('{{index .Spec.Labels "deploylib.port"}}') == str(blue)
        assert upstream_servers(bed.proxy) == [
            f"server 127.0.0.1:{blue} max_fails=0;",
            f"server 127.0.0.1:{green} backup max_fails=0;",
        ]
        # the release's variables reach the tasks through docker's environment
        assert get(bed.proxy.port, "/greeting").strip() == "hello from the env file"
        # the image the service runs is the pushed digest
        image = bed.spec("{{.Spec.TaskTemplate.ContainerSpec.Image}}")
        digest = bed.project.target / "releases" / r1 / "REVISION"
        assert image.endswith("@" + digest.read_text().split("digest ")[1].strip())

        with Load(bed.proxy.port, max_requests=500_000, max_seconds=240) as load:
            load.wait_for_answers(10)
            second = bed.cli("deploy", "--verbose")
            assert second.returncode == 0, second.stdout + second.stderr
            r2 = bed.project.current()
            assert r2 != r1 and bed.serves(r2) and bed.running_release() == r2
            assert "updating the service demo" in second.stdout
            assert "task demo.1" in second.stdout  # followed task by task
            assert upstream_servers(bed.proxy) == [
                f"server 127.0.0.1:{green} max_fails=0;",
                f"server 127.0.0.1:{blue} backup max_fails=0;",
            ]
            load.wait_for_answers(10)

            # rollback: the service's previous spec (r1's image, variables and port)
            back = bed.cli("rollback", "--verbose")
            assert back.returncode == 0, back.stdout + back.stderr
            assert "rolling the service demo back to its previous spec" in back.stdout
            assert bed.serves(r1) and bed.running_release() == r1
            assert bed.spec("{{.UpdateStatus.State}}") == "rollback_completed"
            assert bed.project.current() == r1
            load.wait_for_answers(10)

            # a release whose tasks never become healthy: swarm rolls it back, the old task
            # serves throughout, untouched
            old_tasks = bed.tasks()
            bed.project.write("app/BROKEN", "")
            broken = bed.cli("deploy")
            assert broken.returncode == 1, broken.stdout + broken.stderr
            assert "swarm rolled demo back to its previous spec" in broken.stdout + broken.stderr
            assert "local start | task demo.1" in broken.stdout  # progress, without --verbose
            assert bed.tasks() == old_tasks
            assert bed.running_release() == r1 and bed.project.current() == r1
            assert bed.serves(r1)
            load.wait_for_answers(10)

            # healthy for swarm, failing deploylib's checks: put back by the previous spec
            (bed.project.root / "app" / "BROKEN").unlink()
            bed.project.write("app/WRONG", "")
            wrong = bed.cli("deploy")
            assert wrong.returncode == 1, wrong.stdout + wrong.stderr
            assert bed.running_release() == r1 and bed.project.current() == r1
            assert bed.serves(r1)
            load.wait_for_answers(10)

        assert load.failures == [], load.failures[:5]
        print(f"{sum(load.bodies.values())} requests through nginx, 0 failed")

        status = bed.cli("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        [row] = json.loads(status.stdout)
        assert row["current"] == r1
        history = bed.cli("releases", "--json")
        assert history.returncode == 0, history.stdout + history.stderr
        outcomes = [(r["event"], r["outcome"]) for r in json.loads(history.stdout)]
        assert outcomes.count(("deploy", "success")) == 2
        assert ("rollback", "success") in outcomes


def test_a_swarm_service_in_place_deploys_rolls_back_and_survives_a_sick_release(
    tmp_path: Path, manager: Dockerd
) -> None:
    with swarm_bed(tmp_path, manager, proxied=False) as bed:
        first = bed.cli("deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        r1 = bed.project.current()
        assert r1 and bed.serves(r1) and bed.running_release() == r1
        # in place the spec names no port: the tasks listen where the app says
        assert bed.spec('{{index .Spec.Labels "deploylib.port"}}') == ""

        bed.project.write("app/BROKEN", "")
        broken = bed.cli("deploy")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert bed.running_release() == r1 and bed.project.current() == r1
        assert bed.serves(r1)

        (bed.project.root / "app" / "BROKEN").unlink()
        second = bed.cli("deploy")
        assert second.returncode == 0, second.stdout + second.stderr
        r2 = bed.project.current()
        assert bed.serves(r2) and bed.running_release() == r2

        back = bed.cli("rollback", "--verbose")
        assert back.returncode == 0, back.stdout + back.stderr
        assert "rolling the service demo back to its previous spec" in back.stdout
        assert bed.serves(r1) and bed.running_release() == r1
        assert bed.project.current() == r1


SLEEPER = """\
from deploylib import Pipeline, build, push
from deploylib.recipes import service

pipeline = Pipeline(
    build(image="{app}:{release}", context="app", build_args={"RELEASE": "{release}"}),
    push(),
    service(
        args=["--network", "host", "--init"],
        command=["sh", "-c", "exec sleep 100000"],
        health="true",
        health_interval=0.5,
        health_retries=1,
    ),
)
"""


def test_a_rollback_after_a_replicas_change_goes_back_to_the_previous_count(
    tmp_path: Path, manager: Dockerd
) -> None:
    """``docker service rollback`` restores the previous spec, its replica count too: the
    rollback is done when the spec's count of tasks runs, whatever deploy.toml says now."""
    with swarm_bed(tmp_path, manager, proxied=False) as bed:
        bed.project.write("pipelines/web.py", SLEEPER)
        toml = (
            (bed.project.root / "deploy.toml").read_text().replace("timeout = 90", "timeout = 30")
        )
        bed.project.write("deploy.toml", toml)
        first = bed.cli("deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        r1 = bed.project.current()
        bed.project.write("deploy.toml", toml.replace("replicas = 1", "replicas = 2"))
        bed.project.write("app/CHANGED", "")
        second = bed.cli("deploy")
        assert second.returncode == 0, second.stdout + second.stderr
        r2 = bed.project.current()
        assert r2 != r1 and len(bed.tasks()) == 2

        back = bed.cli("rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        assert bed.running_release() == r1 and bed.project.current() == r1
        assert bed.spec("{{.Spec.Mode.Replicated.Replicas}}") == "1"
