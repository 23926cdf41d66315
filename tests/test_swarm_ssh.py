"""A swarm of two nodes in network namespaces: the manager, reached over SSH, is the
environment's one host; the worker only joined the swarm. Each runs its own dockerd; this
machine's dockerd builds and pushes to a registry behind basic auth on the test bridge.

What only a real multi-node swarm shows: the manager logs in (password on stdin) and hands the
credentials to the worker (``--with-registry-auth``), which pulls the release's digest itself;
the service's tasks run on both nodes, each node answers with the release, a rollback to the
previous spec reaches both, and no docker config keeps the password."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Fleet
from tests.testbed.docker import Dockerd, answer, dockerd, registry, state_dir

pytestmark = pytest.mark.slow

DOCKERFILE = """\
FROM deploylib-base:1
ARG RELEASE
RUN mkdir -p /www && echo "ok $RELEASE" > /www/health
CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/greeting; exec httpd -f -p 0.0.0.0:8080 -h /www"]
"""

PIPELINE = """\
from deploylib import Pipeline, build, http, push, verify
from deploylib.recipes import service

pipeline = Pipeline(
    build(image="{app}:{release}", context="app", build_args={"RELEASE": "{release}"}),
    push(),
    service(
        args=["--network", "host", "--init", "--replicas-max-per-node", "1"],
        health="wget -q -O /dev/null http://127.0.0.1:8080/health",
        health_interval=0.5,
    ),
    verify(http("http://{host_address}:8080/health", contains="{release}"), attempts=50, wait=0.2),
)
"""

TOML = """\
app = "demo"
deploy_to = "/srv/demo"
registry = "{registry}"

[environments.swarm]
hosts = [{{ address = "{address}", user = "root", name = "manager" }}]
orchestrator = "swarm"
command_timeout = 120

[environments.swarm.swarm]
replicas = 2
order = "stop-first"
monitor = 2
timeout = 100

[environments.swarm.ssh]
key_file = "{key}"
known_hosts = "{known_hosts}"
connect_timeout = 3
channel_timeout = 3
"""

PASSWORD = "pw-swarm-5c1f-never-printed"


@pytest.fixture(scope="module")
def controller() -> Iterator[Dockerd]:
    with dockerd(["--insecure-registry=10.0.0.0/8"]) as made:
        made.base_image()
        yield made


def test_a_service_runs_on_a_manager_and_a_worker_and_rolls_back_on_both(
    fleet_of: Callable[[int], Fleet], controller: Dockerd, tmp_path: Path
) -> None:
    fleet = fleet_of(2)
    manager, worker = fleet.hosts.host(1), fleet.hosts.host(2)
    roots = {1: state_dir(), 2: state_dir()}
    socket = f"unix://{roots[1]}/docker.sock"
    fleet.hosts.fake_command(
        1, "docker", f'DOCKER_CONFIG={roots[1]}/config exec /usr/bin/docker -H {socket} "$@"'
    )
    env = {**controller.env, "DOCKER_CONFIG": str(tmp_path / "controller-config")}
    insecure = ["--insecure-registry=10.0.0.0/8"]
    with (
        dockerd(insecure, root=roots[1], namespace=manager.namespace) as first,
        dockerd(insecure, root=roots[2], namespace=worker.namespace) as second,
        registry(tmp_path / "registry", {"robot": PASSWORD}, host=fleet.hosts.gateway) as reg,
    ):
        first.docker("swarm", "init", "--advertise-addr", manager.address)
        token = first.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        second.docker(
            "swarm", "join", "--token", token, "--advertise-addr", worker.address,
            f"{manager.address}:2377",
        )  # fmt: skip
        assert len(first.lines("node", "ls", "-q")) == 2

        project = fleet.project
        project.write(
            "deploy.toml",
            TOML.format(
                registry=reg.address,
                address=manager.address,
                key=fleet.hosts.client_key,
                known_hosts=fleet.hosts.known_hosts,
            ),
        )
        project.write("app/Dockerfile", DOCKERFILE)
        project.write("pipelines/web.py", PIPELINE)
        project.write(
            ".env",
            'GREETING="from the swarm"\nREGISTRY_USERNAME="robot"\n'
            f'REGISTRY_PASSWORD="{PASSWORD}"\n',
        )

        def cli(*args: str) -> str:
            done = project.cli(*args, "--env", "swarm", env=env, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            assert PASSWORD not in done.stdout + done.stderr
            return done.stdout

        def on_both(release: str) -> None:
            for host in (manager, worker):
                body = answer(8080, "/health", host=host.address).strip()
                assert body == f"ok {release}", (host.name, body)

        cli("deploy")
        r1 = fleet.current(1)
        assert r1 is not None
        on_both(r1)
        tasks = first.lines("service", "ps", "-q", "--filter", "desired-state=running", "demo")
        nodes = first.lines("inspect", "--type", "task", "--format", "{{.NodeID}}", *tasks)
        assert len(tasks) == 2 and len(set(nodes)) == 2  # a task on each node
        assert answer(8080, "/greeting", host=worker.address).strip() == "from the swarm"

        cli("deploy")
        r2 = fleet.current(1)
        assert r2 not in (None, r1)
        on_both(r2)

        out = cli("rollback", "--verbose")
        assert "rolling the service demo back to its previous spec" in out
        assert fleet.current(1) == r1
        on_both(r1)

        # the worker pulled with the credentials swarm handed it; no config keeps them
        revision = manager.srv / "demo" / "releases" / r1 / "REVISION"
        digest = revision.read_text().split("digest ")[1].strip()
        pulled = second.lines(
            "images", "--digests", "--format", "{{.Digest}}", f"{reg.address}/demo"
        )
        assert digest in pulled
        config = roots[1] / "config" / "config.json"
        assert config.exists() and reg.address not in json.loads(config.read_text()).get(
            "auths", {}
        )
        logs = [p.read_text() for p in (project.root / ".deploylib").rglob("*.log")]
        assert logs and all(PASSWORD not in text for text in logs)
        status = json.loads(cli("status", "--json"))
        assert [row["current"] for row in status] == [r1]
        first.docker("service", "rm", "demo", check=False)
