"""Random deploys, failed prepares, failed verifies and rollbacks over several hosts keep every
host on the same release.

The hosts are directories on this machine: a backend runs each command for real, with the
environment's deploy_to rewritten to that host's own directory.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylib import DeployFailed, Pipeline, build, command, push, run, switch, verify
from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Result, Upload
from deploylib.hosts import LOCAL, Host
from deploylib.reporting import RecordingReporter
from deploylib.runner import Runner
from deploylib.testing import environment

pytestmark = pytest.mark.slow

DEPLOY_TO = "/srv/app"
HOSTS = ["h1", "h2", "h3"]

PIPELINE = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    run("test ! -e {deploy_to}/FAIL_PREPARE"),
    switch(
        restart="if [ -e {deploy_to}/BREAK_NEXT ]; then rm {deploy_to}/BREAK_NEXT; "
        "touch {deploy_to}/UNHEALTHY-{release}; fi"
    ),
    verify(command("test ! -e {deploy_to}/UNHEALTHY-{release}"), attempts=1, wait=0),
)


class RebasedHost(LocalBackend):
    """A host whose ``/srv/app`` is ``root/srv/app`` on this machine."""

    def __init__(self, host: Host, root: Path) -> None:
        super().__init__(host)
        self.base = str(root) + DEPLOY_TO

    def _rebase(self, text: str) -> str:
        return text.replace(DEPLOY_TO, self.base)

    def run(self, command: Command) -> Result:
        cwd = self._rebase(command.cwd) if command.cwd else None
        return super().run(replace(command, script=self._rebase(command.script), cwd=cwd))

    def upload(self, upload: Upload) -> Result:
        return super().upload(replace(upload, remote=self._rebase(upload.remote)))


ACTIONS = st.sampled_from(["deploy", "fail_prepare", "fail_verify", "rollback"])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(st.tuples(ACTIONS, st.sampled_from(HOSTS)), min_size=1, max_size=7),
    keep=st.integers(min_value=1, max_value=3),
)
def test_every_host_stays_on_one_release(actions: list[tuple[str, str]], keep: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "project" / "app").mkdir(parents=True)
        (root / "project" / "app" / "index.txt").write_text("hello\n")
        env = environment(
            root / "project",
            deploy_to=DEPLOY_TO,
            keep_releases=keep,
            hosts=[Host(h, h) for h in HOSTS],
            shared_dirs=["log"],
        )
        minutes = count()

        def clock() -> datetime:
            return datetime(2026, 4, 1, tzinfo=UTC) + timedelta(minutes=next(minutes))

        def make_runner() -> Runner:
            return Runner(
                env,
                PIPELINE,
                reporter=RecordingReporter(),
                clock=clock,
                backend_for=lambda host: RebasedHost(host, root / host.name),
                controller=LocalBackend(LOCAL),
                revision="rev",
            )

        def host_dir(name: str) -> Path:
            return root / name / "srv" / "app"

        for name in HOSTS:
            host_dir(name).mkdir(parents=True)
        current: str | None = None
        for action, victim in actions:
            if action == "deploy":
                current = make_runner().deploy(env.hosts).release
            elif action in ("fail_prepare", "fail_verify"):
                marker = host_dir(victim) / (
                    "FAIL_PREPARE" if action == "fail_prepare" else "BREAK_NEXT"
                )
                marker.touch()
                try:
                    make_runner().deploy(env.hosts)
                except DeployFailed as failure:
                    assert set(failure.placement.values()) == {current}
                else:
                    raise AssertionError("a failing deploy succeeded")
                marker.unlink(missing_ok=True)
            else:
                try:
                    current = make_runner().rollback(env.hosts).release
                except DeployFailed as failure:
                    assert set(failure.placement.values()) == {current}
            for name in HOSTS:
                link = host_dir(name) / "current"
                on_host = os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None
                assert on_host == current, (name, action)
                if current is not None:
                    assert (host_dir(name) / "releases" / current / "REVISION").is_file()
                assert not (host_dir(name) / ".deploylib" / "lock").exists()
