"""Attacks on the swarm scripts and settings, each once a bug: a value that fills a field twice,
a hand-made service removed, the app's variables steering deploylib's own docker, a port label
left from slots, a registry login outliving a deadline, timeouts that cut the follower off,
and a refused first release left running.

The scripts of deploylib/remote/swarm.py run under sh against a fake ``docker`` (on PATH)
that answers ``service inspect`` from files and logs every argv and the ``DOCKER_HOST`` it saw.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deploylib import ConfigError, Pipeline, build, http, push, verify
from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.config import load_environment
from deploylib.config.schema import SwarmSettings
from deploylib.pipeline import fits
from deploylib.recipes import service
from deploylib.remote import swarm
from deploylib.remote.images import Login
from deploylib.secrets import Secret
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

FAKE_DOCKER = r"""#!/bin/sh
D=@STATE@
printf '%s\n' "$*" >> "$D/argv"
printf 'DOCKER_HOST=%s\n' "${DOCKER_HOST-}" >> "$D/envlog"
case "$1 $2" in
"service inspect")
  [ -e "$D/exists" ] || exit 1
  [ "$3" = "--format" ] || exit 0
  case "$4" in
    *PreviousSpec*) cat "$D/previous" 2>/dev/null ;;
    *UpdateStatus.Message*) echo "a message" ;;
    *UpdateStatus*) cat "$D/status" 2>/dev/null ;;
    *ContainerSpec.Env*) cat "$D/env" 2>/dev/null ;;
    *Spec.Labels*) cat "$D/labels" ;;
  esac
  exit 0 ;;
"service ps")
  case "$*" in
    *desired-state=shutdown*) exit 0 ;;
    *" -q "*) echo task1 ;;
    *) echo "demo.1 node Running Running" ;;
  esac
  exit 0 ;;
"inspect --type")
  case "$*" in *deploylib.release*) cat "$D/tasks" ;; *) echo shutdown ;; esac
  exit 0 ;;
"service create"|"service update"|"service rollback"|"service rm")
  [ ! -f "$D/on_$2" ] || . "$D/on_$2"
  exit 0 ;;
esac
case "$1" in
  login) cat > /dev/null; echo stored > "$D/config" ;;
  logout) rm -f "$D/config" ;;
esac
exit 0
"""


class Bed:
    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.state.mkdir()
        self.bin = root / "bin"
        self.bin.mkdir()
        docker = self.bin / "docker"
        docker.write_text(FAKE_DOCKER.replace("@STATE@", str(self.state)))
        docker.chmod(0o755)
        self.release = root / "release"
        self.release.mkdir()
        (self.release / "IMAGE").write_text("127.0.0.1:5000/demo:r2\n")
        (self.release / ".env.docker").write_text("GREETING=hi\n")
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def service(self, labels: str, previous: str = "", status: str = "", tasks: str = "") -> None:
        (self.state / "exists").write_text("")
        (self.state / "labels").write_text(labels + "\n")
        (self.state / "previous").write_text(previous + "\n" if previous else "")
        (self.state / "status").write_text(status + "\n" if status else "")
        (self.state / "tasks").write_text(tasks + "\n")

    def hook(self, verb: str, shell: str) -> None:
        (self.state / f"on_{verb}").write_text(shell)

    def run(self, script: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", script],
            cwd=self.release,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=60,
            input=input,
        )

    @property
    def argv(self) -> list[str]:
        path = self.state / "argv"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    return Bed(tmp_path)


SETTINGS = SwarmSettings(timeout=5)


def demo(settings: SwarmSettings = SETTINGS, **kwargs: Any) -> swarm.Service:
    """The service ``demo``, followed for 3 s at most."""
    return swarm.Service("demo", "demo", settings, deadline=3, **kwargs)


# 1. promise 4: _fill replaces @name@ again inside words already filled in (args, command, health)
def test_a_placeholder_like_word_in_args_cannot_unquote_the_command(
    bed: Bed, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    svc = swarm.Service(
        "demo", "demo", SETTINGS, args=["--label", "x='@command@"], command=[f"$(touch {marker})"]
    )
    bed.run(swarm.converge_script(svc, "20260101T000000Z-abc", None, None))
    assert not marker.exists(), "the command word ran in the shell: @command@ was filled twice"


# 2. promise 7: a failed first blue-green release on a service made by hand removes that service
def test_stopping_a_failed_release_never_removes_a_service_deploylib_did_not_make(
    bed: Bed,
) -> None:
    release = "20260101T000000Z-abc"
    bed.service(labels=f"{release}|8002", previous="|", status="completed|T1")
    bed.run(swarm.stop_script(demo(), release, 8002))
    assert not any(line.startswith("service rm") for line in bed.argv), bed.argv


# 3. the release's variables never steer deploylib's own docker commands: none is in the
# script's environment, and a variable the docker CLI would read as its own is refused
@pytest.mark.parametrize("name", ["DOCKER_HOST", "DOCKER_CONFIG", "HOME", "PATH", "https_proxy"])
def test_the_apps_variables_never_steer_deploylibs_own_docker_commands(name: str) -> None:
    env = environment(
        registry="127.0.0.1:5000", orchestrator="swarm", variables={name: "x", "GREETING": "hi"}
    )
    pipeline = Pipeline(build(image="{app}:{release}", context="app"), push(), service())
    with pytest.raises(ConfigError, match=name) as error:
        fits(pipeline, env)
    assert error.value.key == name


def test_the_script_that_gives_the_service_its_variables_runs_without_them(bed: Bed) -> None:
    bed.service(labels="20250101T000000Z-old|", status="completed|T1", tasks="x running")
    bed.env["DOCKER_HOST"] = "unix:///run/the-managers.sock"
    done = bed.run(swarm.converge_script(demo(), "r2", None, None))
    assert "service update" in "\n".join(bed.argv), done.stderr
    seen = set((bed.state / "envlog").read_text().splitlines())
    assert seen == {"DOCKER_HOST=unix:///run/the-managers.sock"}  # every docker call


# 4. strategy blue_green -> all on an existing service: deploylib.port is never removed, so
# every in-place deploy fails with "swarm rolled demo back" although swarm did not
def test_an_in_place_update_of_a_service_that_ran_on_slots_converges(bed: Bed) -> None:
    bed.service(labels="r1|8001", status="completed|T1", tasks="r1 running")
    # docker keeps the labels it is not told to remove: --label-add merges
    bed.hook(
        "update",
        'case "$*" in *"--label-rm deploylib.port"*) p= ;; *) p=8001 ;; esac; '
        'echo "r2|$p" > "$D/labels"; echo "r2 running" > "$D/tasks"; '
        'echo "completed|T2" > "$D/status"',
    )
    done = bed.run(swarm.converge_script(demo(), "r2", None, None))
    assert done.returncode == 0, done.stdout + done.stderr


# 5. a deadline's TERM ends the script through its trap: the registry login never outlives it
def test_a_stuck_update_ends_with_the_registry_logged_out(bed: Bed) -> None:
    bed.service(labels="r1|", status="completed|T1", tasks="r1 running")
    bed.hook("update", 'echo "updating|T2" > "$D/status"')  # stuck
    login = Login("127.0.0.1:5000", "user", Secret("pw"))
    settings = SwarmSettings(timeout=3)
    script = swarm.converge_script(demo(settings), "r2", None, login)
    command = Command(
        script,
        cwd=str(bed.release),
        env={"PATH": bed.env["PATH"], "REGISTRY_USERNAME": "user"},
        stdin=Secret("pw"),
        timeout=2,  # the command's deadline comes first
    )
    result = LocalBackend().execute(command)
    assert result.exit_code != 0
    assert not (bed.state / "config").exists(), "docker logout never ran"


def test_a_swarm_timeout_longer_than_the_command_timeout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy.toml").write_text(
        'app = "demo"\ndeploy_to = "/srv/demo"\nregistry = "127.0.0.1:5000"\n'
        '[environments.prod]\nhosts = ["deploy@203.0.113.5"]\norchestrator = "swarm"\n'
        "[environments.prod.swarm]\ntimeout = 3600\n"
    )
    with pytest.raises(Exception, match="timeout"):
        load_environment(tmp_path / "deploy.toml", "prod", environ={})


def test_a_timeout_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SwarmSettings(timeout=0.5)


# 8. a first in-place deploy refused by the pipeline's checks takes its release off the service
# (here: removes the service it made), not only `current`
def test_a_failed_first_in_place_deploy_leaves_no_service_running_it() -> None:
    fleet = FakeFleet()
    digest = "sha256:" + "cd" * 32

    def pushed(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.description == "push image":
            return Result(0, f"127.0.0.1:5000/app@{digest}\n")
        return None

    fleet.controller.respond(pushed)
    fleet["local"].respond(lambda op: Result(1, stderr="503") if isinstance(op, Probe) else None)
    env = environment(registry="127.0.0.1:5000", orchestrator="swarm", swarm=SwarmSettings())
    pipeline = Pipeline(
        build(image="{app}:{release}", context="app"),
        push(),
        service(),
        verify(http("http://127.0.0.1:8000/health"), attempts=1),
    )
    outcome, _ = deploy_with_fakes(env, pipeline, fleet)
    commands = fleet["local"].commands
    restart = next(i for i, c in enumerate(commands) if c.description == "restart")
    assert "docker service create" in commands[restart].script
    after = [c.script for c in commands[restart + 1 :]]
    stop = [c for c in commands[restart + 1 :] if c.description == "stop"]
    assert len(stop) == 1 and "docker service rm" in stop[0].script, (str(outcome), after)
