"""Specifies ``build(git=...)``: the exact ``git archive`` argv it runs on the controller, and
the arguments ``build()`` refuses."""

from __future__ import annotations

from typing import Any

import pytest

from deploylib import ConfigError, Pipeline, build, push, switch
from deploylib.errors import DeployError
from deploylib.remote.layout import make_release_id
from deploylib.testing import FIXED_TIME, WORKDIR, FakeFleet, deploy_with_fakes, environment

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("path", "cwd"), [("app", "/project/app"), (".", "/project")])
def test_a_git_build_archives_the_commit_in_its_directory(path: str, cwd: str) -> None:
    fleet = FakeFleet()
    pipeline = Pipeline(build(git=path), push(), switch())
    outcome, _ = deploy_with_fakes(environment(), pipeline, fleet, revision=COMMIT)

    assert not isinstance(outcome, DeployError), outcome
    release = make_release_id(FIXED_TIME, COMMIT)
    assert release == "20260102T030405Z-0123456"
    artifact = f"{WORKDIR}/app-{release}.tar.gz"
    assert fleet.controller.lines == [
        f"cd {cwd} && git archive --format=tar.gz --output={artifact} --end-of-options {COMMIT}",
        f"test -s {artifact}",
    ]


def test_a_git_build_needs_a_commit_id_and_refuses_before_anything_runs() -> None:
    fleet = FakeFleet()
    pipeline = Pipeline(build(git="app"), push(), switch())
    outcome, _ = deploy_with_fakes(environment(), pipeline, fleet, revision="v1.2")
    assert isinstance(outcome, ConfigError) and outcome.exit_code == 2
    assert "not a commit id" in str(outcome)
    assert fleet.controller.lines == [] and fleet.backends == {}


def test_a_command_build_is_unchanged() -> None:
    fleet = FakeFleet()
    pipeline = Pipeline(build("tar -czf {artifact} -C app ."), push(), switch())
    deploy_with_fakes(environment(), pipeline, fleet, revision=COMMIT)
    assert fleet.controller.lines[0].startswith("cd /project && tar -czf ")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("tar -czf {artifact} .",), {"git": "app"}),
        ((), {"git": ""}),
        ((), {"git": "/abs"}),
        ((), {"git": "../outside"}),
        ((), {"git": "app/../../outside"}),
        ((), {"git": "app\nrm -rf /"}),
        ((), {"git": "app", "cwd": "app"}),
    ],
)
def test_build_refuses_what_is_not_one_build(args: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="build"):
        build(*args, **kwargs)


def test_a_git_path_is_normalised() -> None:
    assert build(git="./app/").git == "app"  # type: ignore[attr-defined]
