"""Every deploy, rollback and dry run leaves its whole log on this machine: each command, each
line of its output, the timings and the outcome, secrets masked; the oldest logs go."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project

SECRET = "log-secret-value-42"


def logs_of(project: Project) -> list[Path]:
    directory = project.root / ".deploylib" / "logs"
    return sorted(directory.glob("*.log")) if directory.is_dir() else []


def last_event(text: str) -> str:
    """The last line of a log that starts an event (others continue its message)."""
    return [line for line in text.splitlines() if not line.startswith(" ")][-1]


def test_a_deploy_writes_its_whole_log_and_says_where(project: Project) -> None:
    project.write(".env", f"TOKEN={SECRET}\n")
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'run("test ! -e FAIL_PREPARE", cwd="{release_path}")',
            'run("echo hello from the step; echo token $TOKEN >&2", name="talk")',
        ),
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    [log] = logs_of(project)
    assert f"log: .deploylib/logs/{log.name}" in done.stderr
    assert "-dev-deploy-" in log.name
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "local talk | hello from the step" in text  # output, with host and step
    assert "local talk ! token ***" in text and SECRET not in text  # stderr, masked
    assert "operation" in text and "tar -czf" in text  # every command
    assert '"seconds"' in text  # timings
    last = last_event(text)
    assert "deploy.ok" in last and '"outcome": "success"' in last

    project.write("app/BROKEN", "")
    failed = project.cli("deploy", "--env", "dev")
    assert failed.returncode == 1
    newest = logs_of(project)[-1]
    assert f"log: .deploylib/logs/{newest.name}" in failed.stderr
    assert " deploy.failed " in last_event(newest.read_text())

    back = project.cli("rollback", "--env", "dev")
    dry = project.cli("deploy", "--env", "dev", "--dry-run")
    assert dry.returncode == 0 and back.returncode == 1  # nothing earlier to go back to
    names = [p.name for p in logs_of(project)]
    assert any("-dev-rollback-" in n for n in names) and any("-dev-dry-run-" in n for n in names)


def test_old_logs_go_and_log_dir_may_be_elsewhere_or_nowhere(project: Project) -> None:
    project.write(
        "deploy.toml", BASIC_TOML.replace("keep_releases = 3", "keep_releases = 3\nkeep_logs = 2")
    )
    for _ in range(3):
        assert project.cli("deploy", "--env", "dev").returncode == 0
    assert len(logs_of(project)) == 2

    elsewhere = project.root.parent / "deploy-logs"
    elsewhere.mkdir()
    theirs = [elsewhere / "syslog.log", elsewhere / "20200101T000000Z-app.log"]
    for path in theirs:
        path.write_text("not deploylib's\n")
    project.write(
        "deploy.toml",
        BASIC_TOML.replace(
            'deploy_to = "target"', f'deploy_to = "target"\nlog_dir = "{elsewhere}"\nkeep_logs = 2'
        ),
    )
    assert project.cli("deploy", "--env", "dev").returncode == 0
    assert len(list(elsewhere.glob("*-dev-deploy-*.log"))) == 1
    for _ in range(2):  # beyond keep_logs: only deploylib's own logs go
        assert project.cli("deploy", "--env", "dev").returncode == 0
    assert all(path.read_text() == "not deploylib's\n" for path in theirs)

    project.write(
        "deploy.toml",
        BASIC_TOML.replace('deploy_to = "target"', 'deploy_to = "target"\nlog_dir = ""'),
    )
    quiet = project.cli("deploy", "--env", "dev")
    assert quiet.returncode == 0 and "log:" not in quiet.stderr
    assert len(list(elsewhere.glob("*-dev-deploy-*.log"))) == 2 and len(logs_of(project)) == 2


def test_a_log_that_cannot_be_written_is_a_warning_not_a_failure(project: Project) -> None:
    blocked = project.root / ".deploylib"
    blocked.write_text("a file where the log directory would be\n")
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LogFileReporter stopped reporting" in done.stdout + done.stderr
    assert project.current() is not None and "log:" not in done.stderr


def test_the_log_is_no_change_to_ship_in_a_git_work_tree(project: Project) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)

    git("init", "-q")
    (project.root / ".gitignore").write_text("target/\n")  # no .deploylib/ line
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "app")
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYLIB_USER"}
    for round in range(2):  # the first deploy's log must not make the second refuse a dirty tree
        if round:
            git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
                "-m", "next")  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "deploylib", "deploy", "--env", "dev"],
            cwd=project.root, env={**env, "CI": "true"}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert len(logs_of(project)) == 2
