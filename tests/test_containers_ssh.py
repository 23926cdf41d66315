"""Container releases over SSH: a real sshd host in a network namespace with its own dockerd
(tests/testbed/sshhosts.py, tests/testbed/docker.py), this machine's dockerd building and
pushing, and a registry behind basic auth on the test bridge's address, which both reach.

What only SSH shows: the registry's password and the env-file variables share the command's
standard input over the channel (``docker login --password-stdin`` after the variables' prelude),
the image is pulled by another daemon than the one that built it, and its digest is checked
there."""

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
CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/greeting; exec httpd -f -p 0.0.0.0:$PORT -h /www"]
"""

PIPELINE = """\
from deploylib import Pipeline, build, http, push, switch, verify

RUN = (
    "docker rm -f demo >/dev/null 2>&1; "
    "docker run -d --name demo --network host --init --env-file {release_path}/.env.docker "
    "-e PORT=8080 --label deploylib.app=demo --label deploylib.release={release} {image} >/dev/null"
)

pipeline = Pipeline(
    build(image="{app}:{release}", context="app", build_args={"RELEASE": "{release}"}),
    push(),
    switch(restart=RUN),
    verify(http("http://{host_address}:8080/health", contains="{release}"), attempts=100, wait=0.1),
)
"""

PASSWORD = "pw-ssh-7d1e-never-printed"


@pytest.fixture(scope="module")
def controller() -> Iterator[Dockerd]:
    """This machine's dockerd: it builds and pushes to the registry on the test bridge."""
    with dockerd(["--insecure-registry=10.0.0.0/8"]) as made:
        made.base_image()
        yield made


def test_an_image_goes_to_an_ssh_host_through_an_authenticated_registry(
    fleet_of: Callable[[int], Fleet], controller: Dockerd, tmp_path: Path
) -> None:
    fleet = fleet_of(1)
    host = fleet.hosts.host(1)
    root = state_dir()
    # the host's docker (first on its PATH) talks to the host's own dockerd and keeps its
    # credentials, while logged in, in a config of its own
    fleet.hosts.fake_command(
        1,
        "docker",
        f'DOCKER_CONFIG={root}/config exec /usr/bin/docker -H unix://{root}/docker.sock "$@"',
    )
    env = {**controller.env, "DOCKER_CONFIG": str(tmp_path / "controller-config")}
    with (
        dockerd(["--insecure-registry=10.0.0.0/8"], root=root, namespace=host.namespace) as remote,
        registry(tmp_path / "registry", {"robot": PASSWORD}, host=fleet.hosts.gateway) as reg,
    ):
        project = fleet.project
        fleet.configure()
        toml = (project.root / "deploy.toml").read_text()
        project.write("deploy.toml", f'registry = "{reg.address}"\n' + toml)  # top level
        project.write("app/Dockerfile", DOCKERFILE)
        project.write("pipelines/web.py", PIPELINE)
        project.write(
            ".env",
            f'GREETING="over ssh"\nREGISTRY_USERNAME="robot"\nREGISTRY_PASSWORD="{PASSWORD}"\n',
        )

        done = project.cli("deploy", "--env", "fleet", env=env, timeout=300)

        assert done.returncode == 0, done.stdout + done.stderr
        r1 = fleet.current(1)
        assert r1 is not None
        ref = f"{reg.address}/demo:{r1}"
        assert ref.rsplit(":", 1)[1] in remote.images(f"{reg.address}/demo")
        revision = (host.srv / "demo" / "releases" / r1 / "REVISION").read_text().splitlines()
        assert revision[1] == f"image {ref}" and revision[2].startswith("digest sha256:")
        assert answer(8080, "/greeting", host=host.address).strip() == "over ssh"
        assert PASSWORD not in done.stdout + done.stderr
        logs = [p.read_text() for p in (project.root / ".deploylib").rglob("*.log")]
        assert logs and all(PASSWORD not in text for text in logs)
        # logged out again, on the host and here: no docker config keeps the credentials
        for config in (
            root / "config" / "config.json",
            tmp_path / "controller-config" / "config.json",
        ):
            assert config.exists()  # docker login wrote it, docker logout emptied it
            assert reg.address not in json.loads(config.read_text()).get("auths", {})

        second = project.cli("deploy", "--env", "fleet", env=env, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        r2 = fleet.current(1)
        assert r2 != r1 and answer(8080, "/health", host=host.address).strip() == f"ok {r2}"
        back = project.cli("rollback", "--env", "fleet", env=env, timeout=300)
        assert back.returncode == 0, back.stdout + back.stderr
        assert (
            fleet.current(1) == r1
            and answer(8080, "/health", host=host.address).strip() == f"ok {r1}"
        )
        remote.remove_all_containers()
