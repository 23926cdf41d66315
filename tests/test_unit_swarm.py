"""Specifies ``orchestrator = "swarm"`` without a swarm: what deploy.toml and the pipeline may
say (refused before any host is touched, naming the key), and the commands a deploy gives the
manager against fake backends, every value an argv word and no variable's value in them.
tests/test_swarm.py runs the same against a real swarm."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from deploylib import ConfigError, Pipeline, build, http, push, verify
from deploylib.commands import Command, Operation, Result
from deploylib.config import load_environment
from deploylib.config.schema import SwarmSettings
from deploylib.pipeline import fits
from deploylib.recipes import container, service
from deploylib.remote import slots as remote_slots
from deploylib.remote import swarm
from deploylib.runner import Outcome
from deploylib.secrets import Secret
from deploylib.steps.service import ServiceRollback
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

DIGEST = "sha256:" + "cd" * 32

BASE = """\
app = "demo"
deploy_to = "/srv/demo"
registry = "127.0.0.1:5000"

[environments.prod]
hosts = ["deploy@203.0.113.5"]
"""

REFUSED = [
    ('orchestrator = "swarm"\nhosts = ["a@h1", "a@h2"]', "environments.prod.hosts"),
    ('orchestrator = "kubernetes"', "environments.prod.orchestrator"),
    ("[environments.prod.swarm]\nreplicas = 2", "environments.prod.swarm"),
    (
        'orchestrator = "swarm"\n[environments.prod.strategy]\nkind = "rolling"',
        "environments.prod.strategy.kind",
    ),
    (
        'orchestrator = "swarm"\n[environments.prod.strategy]\nkind = "blue_green"\n'
        'ports = [8001, 8002]\nupstream_file = "/etc/nginx/u.conf"\nweight = 10',
        "environments.prod.strategy.weight",
    ),
    ('orchestrator = "swarm"\n[environments.prod.swarm]\nreplicas = 0', "environments.prod.swarm"),
    (
        'orchestrator = "swarm"\n[environments.prod.swarm]\norder = "random"',
        "environments.prod.swarm",
    ),
    (
        'orchestrator = "swarm"\n[environments.prod.swarm]\nservice = "a b"',
        "environments.prod.swarm",
    ),
]


@pytest.mark.parametrize(("setting", "key"), REFUSED, ids=[k for _, k in REFUSED])
def test_swarm_settings_that_cannot_work_are_refused_naming_the_key(
    tmp_path: Path, setting: str, key: str
) -> None:
    lines = BASE.splitlines()
    if setting.startswith("[") or "\n[" in setting:
        head, _, table = setting.partition("[")
        body = "\n".join(lines) + "\n" + head + "[" + table + "\n"
    else:
        body = "\n".join(lines) + "\n" + setting + "\n"
    if "hosts = [" in setting:
        body = body.replace('hosts = ["deploy@203.0.113.5"]\n', "", 1)
    (tmp_path / "deploy.toml").write_text(body)
    with pytest.raises(ConfigError) as error:
        load_environment(tmp_path / "deploy.toml", "prod", environ={})
    assert error.value.key is not None and error.value.key.startswith(key), error.value
    assert error.value.file == str(tmp_path / "deploy.toml")


def test_a_swarm_environment_loads_with_its_settings(tmp_path: Path) -> None:
    (tmp_path / "deploy.toml").write_text(
        BASE + 'orchestrator = "swarm"\n[environments.prod.swarm]\nservice = "web"\n'
        'replicas = 3\nparallelism = 2\ndelay = 5\norder = "stop-first"\n'
    )
    env = load_environment(tmp_path / "deploy.toml", "prod", environ={})
    assert env.orchestrator == "swarm"
    assert env.swarm == SwarmSettings(
        service="web", replicas=3, parallelism=2, delay=5, order="stop-first"
    )


def swarm_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        build(image="{app}:{release}", context="app"),
        push(),
        service(**kwargs),  # type: ignore[arg-type]
        verify(http("http://127.0.0.1:8000/health"), attempts=1),
    )


def test_the_pipeline_and_the_orchestrator_go_together() -> None:
    on_swarm = environment(registry="127.0.0.1:5000", orchestrator="swarm")
    plain = environment(registry="127.0.0.1:5000")
    slots = Pipeline(
        build(image="{app}:{release}", context="app"),
        push(),
        container(),
        verify(http("http://127.0.0.1:8000/"), attempts=1),
    )
    with pytest.raises(ConfigError, match=r"recipes\.service"):
        fits(slots, on_swarm)
    with pytest.raises(ConfigError, match='orchestrator = "swarm"'):
        fits(swarm_pipeline(), plain)
    tarball = Pipeline(build("tar czf {artifact} ."), push(), service())
    with pytest.raises(ConfigError, match=r"build\(image=\.\.\.\)"):
        fits(tarball, on_swarm)
    fits(swarm_pipeline(), on_swarm)
    assert isinstance(swarm_pipeline().revert_step(), ServiceRollback)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"args": "--network host"},
        {"command": "httpd -f"},
        {"health": ""},
        {"health": "wget", "health_retries": 0},
        {"health": "wget", "health_interval": 0},
        {"health": "wget", "health_start_period": -1},
    ],
)
def test_bad_service_options_are_refused_when_the_pipeline_is_written(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(ConfigError, match=r"service\("):
        service(**kwargs)  # type: ignore[arg-type]


def pushed(op: Operation) -> Result | None:
    if isinstance(op, Command) and op.description == "push image":
        return Result(0, f"127.0.0.1:5000/app@{DIGEST}\n")
    return None


HOSTILE = "$(touch /tmp/pwned) `id`; rm -rf / 'x\"y"


def test_an_in_place_deploy_moves_current_then_drives_the_service_with_argv_words() -> None:
    fleet = FakeFleet()
    fleet.controller.respond(pushed)
    env = environment(
        registry="127.0.0.1:5000",
        orchestrator="swarm",
        swarm=SwarmSettings(service="web", replicas=2, delay=1.5),
        variables={"TOKEN": Secret("s3cret-value"), "PLAIN": "visible"},
    )
    pipeline = swarm_pipeline(
        args=["--mount", HOSTILE], command=["sh", "-c", HOSTILE], health=HOSTILE
    )
    outcome, _ = deploy_with_fakes(env, pipeline, fleet)
    assert isinstance(outcome, Outcome), outcome
    commands = fleet["local"].commands
    descriptions = [c.description.split()[0] for c in commands]
    assert descriptions.index("switch") < descriptions.index("restart")
    [restart] = [c for c in commands if c.description == "restart"]
    assert restart.cwd == "/srv/app/current"
    assert "s3cret-value" not in restart.script and "visible" not in restart.script
    create_line = next(
        line for line in restart.script.splitlines() if "docker service create" in line
    )
    words = shlex.split(create_line.split("set -- ", 1)[1])
    assert words[:7] == ["docker", "service", "create", "--detach", "--name", "web", "--label"]
    assert words[words.index("--mount") : words.index("--mount") + 2] == ["--mount", HOSTILE]
    assert words[words.index("--health-cmd") + 1] == HOSTILE
    assert words[-4:] == ["$image", "sh", "-c", HOSTILE]
    assert words[words.index("--replicas") + 1] == "2"
    assert words[words.index("--update-delay") + 1] == "1.5s"
    assert words[words.index("--update-order") + 1] == "start-first"
    assert words[words.index("--update-failure-action") + 1] == "rollback"
    assert "--env-file" in words and "PORT" not in " ".join(words)
    # the values reach docker from the release's .env.docker only: none is in the script's
    # environment, where deploylib's own docker commands would read them
    assert "TOKEN" not in restart.env and "PLAIN" not in restart.env


def test_the_converge_script_is_valid_sh_and_pins_the_digest() -> None:
    settings = SwarmSettings(mode="global")
    script = swarm.converge_script(
        swarm.Service("web", "demo", settings), "20260101T000000Z-abc", 8001, None
    )
    assert 'image="$image@$digest"' in script
    assert "--replicas" not in script and "--mode global" in script
    assert "--env-add PORT=8001" in script and "deploylib.port=8001" in script
    for text in (script, swarm.stop_script(swarm.Service("web", "demo", settings), "R", 8001)):
        checked = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_the_upstream_keeps_the_other_slot_as_a_backup_that_is_never_taken_for_live() -> None:
    lines = remote_slots.upstream_lines([(8002, None)], [8001])
    assert lines[1:] == [
        "server 127.0.0.1:8002 max_fails=0;",
        "server 127.0.0.1:8001 backup max_fails=0;",
    ]
    assert remote_slots.upstream_ports("\n".join(lines)) == {8002}
    assert remote_slots.upstream_lines([(8002, None)])[1:] == ["server 127.0.0.1:8002;"]
