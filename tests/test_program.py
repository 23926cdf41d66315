"""The ``deploylib`` program offers its own options only. Invoke's core flags are usage errors
(exit 2, nothing run) instead of traps: ``--dry`` is not ``--dry-run``, ``-f`` is not
``--config``. ``deploylib --config FILE TASK`` is ``deploylib TASK --config FILE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project

INVOKE_CORE_FLAGS = [
    "--dry",
    "-R",
    "-f",
    "--echo",
    "--hide",
    "--pty",
    "-p",
    "--warn-only",
    "-w",
    "-T",
    "--command-timeout",
    "--prompt-for-sudo-password",
    "--debug",
    "--complete",
    "--collection",
    "--search-root",
    "--write-pyc",
    "--list-format",
    "--print-completion-script",
]


def test_the_help_lists_the_programs_own_options_and_the_tasks(project: Project) -> None:
    result = project.cli("--help")
    assert result.returncode == 0, result.stderr
    for flag in INVOKE_CORE_FLAGS:
        assert f"{flag} " not in result.stdout and f"{flag}=" not in result.stdout, flag
    assert "--version" in result.stdout and "--config FILE" in result.stdout
    for task in ("deploy", "rollback", "status", "releases", "check", "unlock", "init"):
        assert f"  {task} " in result.stdout, task


@pytest.mark.parametrize("flag", ["--dry", "-f", "--hide", "--pty", "-w", "-T", "--echo"])
def test_an_invoke_core_flag_is_a_usage_error_and_deploys_nothing(
    project: Project, flag: str
) -> None:
    value = {"-f": ["deploy.toml"], "--hide": ["both"], "-T": ["5"]}.get(flag, [])
    before, after = [flag, *value, "deploy"], ["deploy", flag, *value]
    for argv in ([*before, "--env", "dev"], [*after, "--env", "dev"]):
        result = project.cli(*argv)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert repr(flag) in result.stderr and "Usage: deploylib" in result.stderr
    assert project.current() is None and not (project.target / "releases").exists()


def test_a_stray_word_or_an_unknown_task_is_a_usage_error_with_the_usage(project: Project) -> None:
    stray = project.cli("deploy", "prod")
    assert stray.returncode == 2
    assert "'prod'" in stray.stderr and "Usage: deploylib deploy [--options]" in stray.stderr
    unknown = project.cli("deplyo", "--env", "dev")
    assert unknown.returncode == 2 and "'deplyo'" in unknown.stderr
    two = project.cli("status", "releases")
    assert two.returncode == 2 and "one task at a time" in two.stderr
    assert project.current() is None


@pytest.mark.parametrize("extra", [["-V"], ["--version"], ["-l"], ["--", "--dry"], ["-h"]])
def test_a_program_option_or_words_after_the_task_never_run_it(
    project: Project, extra: list[str]
) -> None:
    result = project.cli("deploy", "--env", "dev", *extra)
    assert result.returncode in (0, 2), result.stdout + result.stderr
    assert project.current() is None and not (project.target / "releases").exists()
    if extra[0] == "--":
        assert result.returncode == 2 and "after '--'" in result.stderr


def test_config_before_the_task_is_the_tasks_config(project: Project) -> None:
    (project.root / "deploy.toml").rename(project.root / "other.toml")
    missing = project.cli("deploy", "--env", "dev")
    assert missing.returncode == 2 and "deploy.toml" in missing.stderr
    before = project.cli("--config", "other.toml", "deploy", "--env", "dev")
    assert before.returncode == 0, before.stdout + before.stderr
    first = project.current()
    after = project.cli("deploy", "--env", "dev", "--config=other.toml")
    assert after.returncode == 0, after.stdout + after.stderr
    assert first is not None and project.current() not in (None, first)
    status = project.cli("--config=other.toml", "status", "--env", "dev", "--json")
    current = project.current()
    assert current is not None  # the second deploy's release
    assert status.returncode == 0 and current in status.stdout


def test_version_and_task_help(project: Project) -> None:
    version = project.cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("deploylib ")
    task = project.cli("deploy", "--help")
    assert task.returncode == 0
    assert task.stdout.startswith("Usage: deploylib deploy [--options]")
    assert "--dry-run" in task.stdout and "--core-opts" not in task.stdout


def test_an_empty_events_option_or_a_bad_environment_name_is_a_usage_error(
    project: Project,
) -> None:
    empty = project.cli("deploy", "--env", "dev", "--events=")
    assert empty.returncode == 2 and "--events" in empty.stderr
    toml = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", toml + '\n[environments."evil\\nname"]\nhosts = ["local"]\n')
    bad = project.cli("deploy", "--env", "dev")
    assert bad.returncode == 2 and "environments" in bad.stderr
    assert project.current() is None


def test_the_users_invoke_config_does_not_change_how_commands_run(
    project: Project, tmp_path: Path
) -> None:
    """~/.invoke.yaml's run.dry (or hide, pty, ...) is the user's Invoke habit, not deploylib's."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".invoke.yaml").write_text("run:\n  dry: true\n  echo: true\n")
    result = project.cli("deploy", "--env", "dev", env={"HOME": str(home)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.current() is not None
