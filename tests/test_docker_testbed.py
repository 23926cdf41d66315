"""The container test bed itself: a dockerd and a registry started by the tests, an image made
offline, built FROM, pushed, pulled and run with host networking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed.docker import Dockerd, answer, dockerd, registry
from tests.testbed.load import free_port

pytestmark = pytest.mark.slow

DOCKERFILE = """\
FROM deploylib-base:1
RUN mkdir -p /www && echo ok > /www/health
CMD ["sh", "-c", "exec httpd -f -p 127.0.0.1:$PORT -h /www"]
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[Dockerd]:
    with dockerd() as made:
        yield made


def test_an_image_built_from_the_offline_base_goes_through_the_registry_and_serves(
    daemon: Dockerd, tmp_path: Path
) -> None:
    base = daemon.base_image()
    assert base == "deploylib-base:1"
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(DOCKERFILE)
    with registry(tmp_path / "registry") as reg:
        image = f"{reg.address}/bed:one"
        daemon.docker("build", "--tag", image, str(tmp_path / "ctx"))
        daemon.docker("push", image)
        assert reg.tags("bed") == ["one"]
        daemon.docker("image", "rm", image)
        daemon.docker("pull", image)
        port = free_port()
        daemon.docker(
            "run", "-d", "--name", "bed", "--network", "host", "-e", f"PORT={port}", image
        )
        try:
            assert answer(port, "/health").strip() == "ok"
        finally:
            daemon.docker("rm", "-f", "bed")
