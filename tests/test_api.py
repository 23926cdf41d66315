"""The Python API: ``Project`` runs the tasks with their meaning and exit codes, returns typed
results and raises typed errors; a project can be built in code and is checked as files are;
a user script type-checks under ``mypy --strict`` against the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploylib import (
    ConfigError,
    DeployFailed,
    HostCheck,
    HostStatus,
    Pipeline,
    Project,
    ReleaseRecord,
    build,
    command,
    push,
    switch,
    verify,
)
from deploylib.reporting import RecordingReporter
from tests.conftest import REPO
from tests.conftest import Project as ProjectDir


def test_the_tasks_from_python_return_typed_results(project: ProjectDir) -> None:
    api = Project(project.root)
    first = api.deploy("dev", revision="aaa111")
    assert first.release.endswith("-aaa111") and first.placement == {"local": first.release}
    second = api.deploy("dev", revision="bbb222")

    [host] = api.status("dev")
    assert isinstance(host, HostStatus)
    assert (host.host, host.current, host.revision) == ("local", second.release, "bbb222")
    assert host.consistent and not host.differs and host.locked is False

    history = api.releases("dev")
    assert all(isinstance(r, ReleaseRecord) for r in history)
    assert [(r.event, r.release, r.outcome) for r in history] == [
        ("deploy", first.release, "success"),
        ("deploy", second.release, "success"),
    ]
    assert history[0].hosts == ("local",)

    [checked] = api.check("dev")
    assert isinstance(checked, HostCheck) and checked.ok and checked.writable

    back = api.rollback("dev")
    assert back.release == first.release and project.current() == first.release


def test_errors_are_typed_with_the_exit_code_of_the_command_line(project: ProjectDir) -> None:
    api = Project(project.root)
    with pytest.raises(ConfigError) as unknown:
        api.deploy("nope")
    assert unknown.value.exit_code == 2 and unknown.value.key == "environments.nope"
    project.write("app/BROKEN", "")
    reporter = RecordingReporter()
    with pytest.raises(DeployFailed) as failed:
        api.deploy("dev", reporter=reporter)
    assert failed.value.exit_code == 1 and failed.value.placement == {"local": None}
    assert "deploy.failed" in reporter.kinds()
    with pytest.raises(ConfigError) as text:
        api.deploy("dev", hosts="local")  # a str is a Sequence[str]: the mistake under test
    assert text.value.key == "hosts"
    with pytest.raises(ConfigError):
        Project(project.root, settings=["app"])  # type: ignore[arg-type]  # likewise


def test_a_project_built_in_code_is_checked_as_files_are(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "index.txt").write_text("hi\n")
    settings = {
        "app": "coded",
        "deploy_to": "/srv/coded",
        "environments": {"dev": {"hosts": ["local"], "deploy_to": "target"}},
    }
    web = Pipeline(build("tar -czf {artifact} -C app ."), push(), switch(), verify(command("true")))
    api = Project(tmp_path, settings=settings, pipelines={"web": web})
    outcome = api.deploy("dev", revision="c0ffee")
    assert (tmp_path / "target" / "current").resolve().name == outcome.release

    bad = Project(tmp_path, settings={**settings, "keep_release": 3}, pipelines={"web": web})
    with pytest.raises(ConfigError) as key:
        bad.deploy("dev")
    assert key.value.key == "keep_release" and key.value.message == "unknown key"

    typo = Pipeline(build("tar -czf {artifactt} -C app ."), push(), switch())
    with pytest.raises(ConfigError) as placeholder:
        Project(tmp_path, settings=settings, pipelines={"web": typo}).deploy("dev")
    assert "artifactt" in str(placeholder.value) and "pipeline 'web'" in str(placeholder.value)


USER_SCRIPT = """\
from deploylib import DeployError, HostStatus, Project


def where(env: str) -> dict[str, str | None]:
    hosts: list[HostStatus] = Project(".").status(env)
    return {h.host: h.current for h in hosts}


def ship(env: str) -> int:
    try:
        outcome = Project(".").deploy(env, hosts=["web1"], revision="abc")
    except DeployError as exc:
        return exc.exit_code
    print(outcome.release, outcome.placement)
    return 0
"""


@pytest.mark.slow
def test_a_user_script_type_checks_strictly_against_the_installed_package(
    tmp_path: Path,
) -> None:
    """Built as a wheel and installed (not editable) in a venv of its own: the package ships
    its types (py.typed), and they reach the user's code (a wrong type there is an error)."""
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
    )
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    [wheel] = dist.glob("deploylib-*.whl")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    user = tmp_path / "user"
    user.mkdir()

    def mypy(source: str) -> subprocess.CompletedProcess[str]:
        (user / "script.py").write_text(source)
        strict = ["--strict", "--no-incremental", "--python-executable", python]
        return subprocess.run(
            [sys.executable, "-m", "mypy", *strict, "script.py"],
            cwd=user,
            capture_output=True,
            text=True,
        )

    good = mypy(USER_SCRIPT)
    assert good.returncode == 0, good.stdout + good.stderr
    wrong = mypy(USER_SCRIPT + "\n\ncount: int = Project('.').status('dev')\n")
    assert wrong.returncode == 1 and "list[HostStatus]" in wrong.stdout, wrong.stdout
    assert wrong.stdout.count("error:") == 1, wrong.stdout
