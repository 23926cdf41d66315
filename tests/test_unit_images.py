"""Specifies images as artifacts against fake backends: the commands a deploy with
``build(image=...)`` and ``container()`` gives this machine and each target, every hostile value
an argv word, the registry's password only ever on stdin."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from deploylib import ConfigError, Pipeline, build, http, push, verify
from deploylib.commands import Command, Operation, Result
from deploylib.config import StrategySettings
from deploylib.recipes import container
from deploylib.remote import images
from deploylib.runner import Outcome
from deploylib.secrets import Secret, reveal
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

DIGEST = "sha256:" + "ab" * 32
BG = StrategySettings(
    kind="blue_green", ports=[8001, 8002], upstream_file="/etc/nginx/app.conf", drain=0
)


def pipeline(**build_kwargs: object) -> Pipeline:
    return Pipeline(
        build(image="{app}:{release}", context="app", **build_kwargs),  # type: ignore[arg-type]
        push(),
        container(),
        verify(http("http://127.0.0.1:{port}/health"), attempts=1),
    )


def pushed(op: Operation) -> Result | None:
    """The controller's ``docker push`` answers with the image's digest."""
    if isinstance(op, Command) and op.description == "push image":
        return Result(0, f"127.0.0.1:5000/app@{DIGEST}\n")
    return None


def test_a_deploy_builds_pushes_pulls_and_records_the_image() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    env = environment(registry="127.0.0.1:5000", strategy=BG, variables={"A": "1"})
    outcome, _ = deploy_with_fakes(env, pipeline(build_args={"RELEASE": "{release}"}), fleet)
    assert isinstance(outcome, Outcome), outcome
    release = outcome.release
    ref = f"127.0.0.1:5000/app:{release}"
    [build_cmd] = [c for c in fleet.controller.commands if c.description == "build image"]
    assert shlex.split(build_cmd.script) == [
        "docker", "build", "--tag", ref, "--build-arg", f"RELEASE={release}",
        "--label", "deploylib.app=app", "--label", f"deploylib.release={release}", "--", "app",
    ]  # fmt: skip
    assert build_cmd.cwd == "/project"
    [push_cmd] = [c for c in fleet.controller.commands if c.description == "push image"]
    assert f"docker push {ref} >/dev/null" in push_cmd.script
    target = fleet["local"].commands
    [pull] = [c for c in target if c.description == "pull image"]
    assert f"docker pull {ref} " in pull.script
    assert f"grep -Fqx 127.0.0.1:5000/app@{DIGEST}" in pull.script
    [unpack] = [c for c in target if c.description == "unpack"]
    assert "tar " not in unpack.script
    assert f"printf 'image %s\\ndigest %s\\n' {ref} {DIGEST}" in unpack.script
    [env_file] = [c for c in target if c.description == "container env file"]
    assert env_file.stdin == b"A=1\n"
    descriptions = [c.description for c in target]
    assert descriptions.index("pull image") < descriptions.index("unpack")
    [start] = [c for c in target if c.description == "start"]
    assert "name=app-blue\n" in start.script and "-e PORT=8001" in start.script
    assert f"--label deploylib.release={release}" in start.script
    assert start.cwd == f"/srv/app/releases/{release}"


def test_a_pull_that_fails_switches_nobody() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    fleet["local"].fail_when("docker pull", stderr="manifest unknown")
    env = environment(registry="127.0.0.1:5000", strategy=BG)
    error, _ = deploy_with_fakes(env, pipeline(), fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 1
    assert "manifest unknown" in str(error)
    assert not [c for c in fleet["local"].commands if c.description in ("start", "switch")]


def test_hostile_values_are_argv_words_and_the_password_travels_on_stdin() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    hostile = "x; touch /tmp/pwned $(id) `id`"
    env = environment(
        registry="127.0.0.1:5000",
        strategy=BG,
        variables={
            "REGISTRY_USERNAME": Secret("robot"),
            "REGISTRY_PASSWORD": Secret("hunter2-pw"),
        },
    )
    outcome, events = deploy_with_fakes(
        env, pipeline(build_args={"NOTE": hostile, "TOKEN": None}, target="prod"), fleet
    )
    assert isinstance(outcome, Outcome), outcome
    [build_cmd] = [c for c in fleet.controller.commands if c.description == "build image"]
    words = shlex.split(build_cmd.script)
    assert f"NOTE={hostile}" in words and "TOKEN" in words and words[4:6] == ["--target", "prod"]
    every = [*fleet.controller.commands, *fleet["local"].commands]
    assert all("hunter2-pw" not in c.script and "robot" not in c.script for c in every)
    logins = [c for c in every if "docker login" in c.script]
    assert {c.description for c in logins} == {"push image", "pull image"}
    for login in logins:
        assert isinstance(login.stdin, Secret) and login.stdin.reveal() == "hunter2-pw"
        assert reveal(login.env["REGISTRY_USERNAME"]) == "robot"
        assert '--username "$REGISTRY_USERNAME" --password-stdin' in login.script
        # the logout is set before the login, to run however the command ends
        assert login.script.startswith(
            "trap 'docker logout 127.0.0.1:5000 >/dev/null 2>&1' EXIT; trap 'exit 143' TERM"
        )
    [env_file] = [c for c in fleet["local"].commands if c.description == "container env file"]
    assert isinstance(env_file.stdin, bytes) and b"REGISTRY" not in env_file.stdin
    assert all("hunter2-pw" not in str(e) for e in events.events)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": "-x:1"}, "image name"),
        ({"image": "app"}, "tag"),
        ({"image": "app:1", "context": "../up"}, "context"),
        ({"image": "app:1", "context": "--file=/etc/passwd"}, "context"),
        ({"image": "app:1", "target": "a b"}, "target"),
        ({"image": "app:1", "build_args": {"A B": "1"}}, "build argument"),
    ],
)
def test_bad_build_arguments_are_refused_when_the_pipeline_is_written(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)  # type: ignore[arg-type]


def test_an_image_name_docker_would_refuse_is_a_config_error_before_any_host() -> None:
    fleet = FakeFleet()
    env = environment(registry="127.0.0.1:5000", strategy=BG)
    bad = Pipeline(build(image="App:{release}"), push(), container())
    error, _ = deploy_with_fakes(env, bad, fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 2
    assert not fleet["local"].operations


def test_references_and_digests() -> None:
    assert images.reference("app:1", "reg.example:5000/team") == "reg.example:5000/team/app:1"
    assert images.registry_of("reg.example:5000/team/app:1") == "reg.example:5000"
    assert images.registry_of("team/app:1") is None
    out = f"other@{DIGEST}\nreg:5000/app@{DIGEST}\n"
    assert images.digest_from(out, "reg:5000/app:r1") == DIGEST
    with pytest.raises(ValueError, match="line break"):
        images.docker_env_text({"A": "two\nlines"})


def test_cleanup_removes_a_releases_stopped_containers_and_image_only_where_it_ran_one() -> None:
    from deploylib.remote.layout import Layout
    from deploylib.remote.release import remove_release_command

    release = "20260301T000000Z-abc1234"
    script = remove_release_command(Layout("/srv/app"), [release], app="app").script
    image_file = f"/srv/app/releases/{release}/IMAGE"
    assert f"if [ -f {image_file} ]; then image=$(head -n 1 {image_file}); " in script
    assert (
        f"docker ps -aq --filter label=deploylib.app=app --filter label=deploylib.release={release}"
        " --filter status=exited --filter status=created --filter status=dead"
    ) in script
    assert 'docker image rm "$image" >/dev/null 2>&1 ' in script  # never forced
    assert script.index("docker image rm") < script.index(f"rm -rf -- /srv/app/releases/{release}")
    assert "docker" not in remove_release_command(Layout("/srv/app"), [release]).script


def test_a_pull_failing_on_one_host_switches_none_and_removes_the_release_everywhere() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    fleet["web2"].fail_when("docker pull", stderr="connection refused")
    env = environment(registry="127.0.0.1:5000", strategy=BG, hosts=["web1", "web2"])
    error, _ = deploy_with_fakes(env, pipeline(), fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 1
    for name in ("web1", "web2"):
        done = [c.description for c in fleet[name].commands]
        assert "start" not in done and "switch" not in done
        assert "remove releases" in done  # the unfinished release dir goes


def test_a_variable_docker_cannot_take_is_refused_before_any_host_is_contacted() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    env = environment(registry="127.0.0.1:5000", strategy=BG, variables={"KEY": "a\nb"})
    error, _ = deploy_with_fakes(env, pipeline(), fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 2
    assert "KEY holds a line break" in str(error)
    assert not fleet["local"].operations and not fleet.controller.operations


def test_registry_is_a_setting_at_the_top_or_per_environment(tmp_path: Path) -> None:
    from deploylib.config import load_environment

    (tmp_path / "deploy.toml").write_text(
        'app = "a"\ndeploy_to = "/srv/a"\nregistry = "reg.example:5000"\n'
        '[environments.one]\nhosts = ["local"]\n'
        '[environments.two]\nhosts = ["local"]\nregistry = "other.example/team"\n'
    )
    assert load_environment(tmp_path / "deploy.toml", "one").registry == "reg.example:5000"
    assert load_environment(tmp_path / "deploy.toml", "two").registry == "other.example/team"
    for bad in ("http://reg.example", "reg.example:5000;id", "-reg", "reg example"):
        (tmp_path / "deploy.toml").write_text(
            f'app = "a"\ndeploy_to = "/srv/a"\nregistry = "{bad}"\n'
            '[environments.one]\nhosts = ["local"]\n'
        )
        with pytest.raises(ConfigError, match="registry"):
            load_environment(tmp_path / "deploy.toml", "one")


def test_an_image_needs_a_registry_and_image_needs_an_image_build() -> None:
    fleet = FakeFleet()
    error, _ = deploy_with_fakes(environment(strategy=BG), pipeline(), fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 2
    assert 'registry = "host:port"' in str(error)
    named = Pipeline(build(image="reg.example:5000/{app}:{release}"), push(), container())
    error, _ = deploy_with_fakes(environment(strategy=BG), named, FakeFleet())
    assert isinstance(error, Outcome), error  # the image names its registry itself
    tarball = Pipeline(build("tar -czf {artifact} ."), push(), container())
    error, _ = deploy_with_fakes(environment(registry="r.example", strategy=BG), tarball, fleet)
    assert not isinstance(error, Outcome) and error.exit_code == 2
    assert "{image} is the release's container image" in str(error)
    assert not fleet["local"].operations
