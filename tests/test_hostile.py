"""Hostile strings in every field a user controls never reach a shell unquoted."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from deploylib import DeployError, actions
from deploylib.reporting import RecordingReporter
from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project, program


def hostile(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"$(touch {m})",
        f"`touch {m}`",
        f"x; touch {m}",
        f"x' ; touch {m}; echo '",
        f'x" ; touch {m}; echo "',
        f"x\ntouch {m}",
        f"../../../..{m}",
    ]


def attempt(project: Project, revision: str = "abc123") -> None:
    """Validate and deploy; bad input may be refused, but never executed."""
    try:
        loaded = actions.load(project.root / "deploy.toml", "dev")
        actions.deploy(loaded, reporter=RecordingReporter(), revision=revision, clock=project.clock)
    except DeployError:
        pass


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.mark.parametrize("index", range(7))
@pytest.mark.parametrize("field", ["revision", "app", "deploy_to", "shared_dir", "env_value"])
def test_hostile_input_never_runs(project: Project, field: str, index: int) -> None:
    marker = project.root.parent / "pwned"
    value = hostile(marker)[index]
    if field == "revision":
        attempt(project, revision=value)
        result = project.cli("deploy", "--env", "dev", "--revision", value)
        assert result.returncode == 2 and "--revision" in result.stderr
    elif field == "app":
        project.write("deploy.toml", BASIC_TOML.replace('"demo"', toml_string(value)))
        result = project.cli("deploy", "--env", "dev")
        assert result.returncode == 2 and "app" in result.stderr
    elif field == "deploy_to":
        # a strange directory name is still just a name: deploys into it, or is refused
        target = str(project.root / "t") + " " + value.replace("\n", " ")
        project.write("deploy.toml", BASIC_TOML.replace('"target"', toml_string(target)))
        attempt(project)
        if ".." not in value:
            assert os.path.islink(os.path.normpath(target) + "/current")
    elif field == "shared_dir":
        project.write("deploy.toml", BASIC_TOML.replace('["log"]', f"[{toml_string(value)}]"))
        attempt(project)
    else:
        project.write(".env", f"HOSTILE={toml_string(value)}\n")
        project.write(
            "pipelines/web.py",
            BASIC_PIPELINE.replace(
                'run("test ! -e FAIL_PREPARE", cwd="{release_path}")',
                'run("printf %s \\"$HOSTILE\\" > {release_path}/seen")',
            ),
        )
        outcome, _ = project.deploy()
        seen = project.target / "releases" / outcome.release / "seen"
        assert seen.read_text() == value
    assert not marker.exists()
    assert not (Path("/") / "pwned").exists()


def test_hostile_host_entries_are_refused(project: Project) -> None:
    marker = project.root.parent / "pwned"
    for value in hostile(marker):
        project.write("deploy.toml", BASIC_TOML.replace('["local"]', f"[{toml_string(value)}]"))
        result = project.cli("deploy", "--env", "dev")
        assert result.returncode == 2 and "environments.dev.hosts.0" in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------- production guard


def run_in_terminal(project: Project, argv: list[str], answer: str | None) -> tuple[int, str]:
    """Run the program with a pseudo-terminal for stdin/stdout; type ``answer`` when asked."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    process = subprocess.Popen(
        program(*argv),
        cwd=project.root,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if answer is not None and not answered and b"to go on" in output:
            os.write(leader, answer.encode() + b"\r")
            answered = True
        if process.poll() is not None and not ready:
            break
    code = process.wait(timeout=30)
    os.close(leader)
    return code, output.decode(errors="replace")


def test_production_guard_asks_for_the_environment_name(project: Project) -> None:
    project.write(
        "deploy.toml", BASIC_TOML.replace('hosts = ["local"]', 'hosts = ["local"]\nconfirm = true')
    )
    code, output = run_in_terminal(project, ["deploy", "--env", "dev"], "prod")
    assert code == 2 and "not confirmed" in output
    assert "dev" in output and "1 host" in output  # the banner names the environment
    assert not project.target.exists()

    code, output = run_in_terminal(project, ["deploy", "--env", "dev"], "dev")
    assert code == 0, output
    assert project.current() is not None

    ci = project.cli("deploy", "--env", "dev")  # CI=true: never asks, refuses without --yes
    assert ci.returncode == 2 and "--yes" in ci.stderr
    assert project.cli("deploy", "--env", "dev", "--yes").returncode == 0
