"""Deploys from git: ``build(git=...)`` ships exactly a commit, ``--revision`` names a commit
(recorded by its full id), and a build that packs a changed working tree is refused unless
``--allow-dirty``. Real repositories in temp dirs, real local deploys."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from deploylib import ConfigError, actions
from deploylib.reporting import RecordingReporter
from tests.conftest import BASIC_PIPELINE, Project

GIT_PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command

pipeline = Pipeline(
    build(git="app"),
    push(),
    switch(),
    verify(command("test -f {current_path}/index.txt"), attempts=1, wait=0),
)
"""
FULL_ID = re.compile(r"[0-9a-f]{40}")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(project: Project) -> Project:
    """The conftest project, committed to a fresh git repository (its deploy target ignored)."""
    project.write(".gitignore", "target/\n__pycache__/\n")
    git(project.root, "init", "-q")
    commit_all(project.root, "first")
    return project


def use_git_build(project: Project) -> str:
    project.write("pipelines/web.py", GIT_PIPELINE)
    return commit_all(project.root, "git build")


def revision_file(project: Project) -> list[str]:
    return (project.target / "current" / "REVISION").read_text().split()


# ------------------------------------------------------------------ build(git=...)


def test_a_git_build_ships_the_commit_not_the_uncommitted_edit(repo: Project) -> None:
    head = use_git_build(repo)
    repo.write("app/index.txt", "edited, not committed\n")
    repo.write("app/new.txt", "untracked\n")

    result = repo.cli("deploy", "--env", "dev", "--revision", "HEAD")

    assert result.returncode == 0, result.stdout + result.stderr
    current = repo.target / "current"
    assert (current / "index.txt").read_text() == "hello\n"
    assert not (current / "new.txt").exists()
    assert not (current / "app").exists()  # the directory's contents at the release's root
    release = repo.current()
    assert release is not None and release.endswith(f"-{head[:7]}")
    assert revision_file(repo) == [release, head]
    assert [e["revision"] for e in repo.log()] == [head]
    listed = repo.cli("releases", "--env", "dev", "--json")
    assert [row["revision"] for row in json.loads(listed.stdout)] == [head]


def test_the_default_revision_is_head_by_its_full_id(repo: Project) -> None:
    head = use_git_build(repo)
    result = subprocess.run(
        [*repo_program(), "deploy", "--env", "dev"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert revision_file(repo)[1] == head
    assert f"revision {head}" in result.stdout


def repo_program() -> list[str]:
    import sys

    return [sys.executable, "-m", "deploylib"]  # without the conftest's --revision label


def test_an_older_revision_deploys_that_commit(repo: Project) -> None:
    first = use_git_build(repo)
    repo.write("app/index.txt", "second\n")
    second = commit_all(repo.root, "second")

    result = repo.cli("deploy", "--env", "dev", "--revision", first[:9])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo.target / "current" / "index.txt").read_text() == "hello\n"
    assert revision_file(repo)[1] == first

    again = repo.cli("deploy", "--env", "dev", "--revision", "HEAD")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (repo.target / "current" / "index.txt").read_text() == "second\n"
    assert [e["revision"] for e in repo.log()] == [first, second]


def test_a_git_build_of_a_project_in_a_subdirectory_of_the_repository(
    tmp_path: Path, project: Project
) -> None:
    """A project dir below the repository's top: the path is the project dir's, and ``"."``
    archives the project dir itself."""
    outer = tmp_path / "mono"
    (outer / "services").mkdir(parents=True)
    project.root.rename(outer / "services" / "demo")
    sub = Project(outer / "services" / "demo")
    sub.write(".gitignore", "target/\n")
    pipeline = GIT_PIPELINE.replace('git="app"', 'git="."')
    sub.write("pipelines/web.py", pipeline.replace("}/index.txt", "}/app/index.txt"))
    git(outer, "init", "-q")
    head = commit_all(outer, "mono")

    result = sub.cli("deploy", "--env", "dev", "--revision", "HEAD")

    assert result.returncode == 0, result.stdout + result.stderr
    current = sub.target / "current"
    assert (current / "deploy.toml").is_file() and (current / "app" / "index.txt").is_file()
    assert not (current / "services").exists()
    assert revision_file(sub)[1] == head


def test_a_git_build_in_a_project_that_is_not_a_git_repository_is_exit_2(
    project: Project,
) -> None:
    project.write("pipelines/web.py", GIT_PIPELINE)
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2
    assert "not in a git work tree" in result.stderr and "build(git='app')" in result.stderr
    assert not project.target.exists()


# ------------------------------------------------------------------ --revision


def test_a_revision_that_names_no_commit_is_exit_2_and_touches_nothing(repo: Project) -> None:
    result = repo.cli("deploy", "--env", "dev", "--revision", "no-such-branch")
    assert result.returncode == 2
    assert "--revision" in result.stderr and "no-such-branch" in result.stderr
    assert not repo.target.exists()


HOSTILE = [
    "--output={marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "HEAD\ntouch {marker}",
    "HEAD; touch {marker}",
    "..",
    "HEAD..HEAD",
    "-h",
    "",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_a_hostile_revision_does_nothing(repo: Project, tmp_path: Path, template: str) -> None:
    use_git_build(repo)
    marker = tmp_path / "pwned"
    revision = template.format(marker=marker)

    with pytest.raises(ConfigError, match="--revision") as refused:
        loaded = actions.load(repo.root / "deploy.toml", "dev")
        actions.deploy(loaded, reporter=RecordingReporter(), revision=revision)
    assert refused.value.exit_code == 2
    result = repo.cli("deploy", "--env", "dev", f"--revision={revision}")
    assert result.returncode == 2, result.stdout + result.stderr

    assert not marker.exists()
    assert not repo.target.exists()


# ------------------------------------------------------------------ a changed working tree


def test_a_command_build_of_a_changed_working_tree_is_refused(repo: Project) -> None:
    repo.write("app/index.txt", "edited\n")
    repo.write("app/notes.txt", "untracked\n")
    for n in range(6):
        repo.write(f"app/more{n}.txt", "untracked\n")

    result = repo.cli("deploy", "--env", "dev", "--revision", "HEAD")

    assert result.returncode == 2, result.stdout + result.stderr
    error = result.stderr
    assert "app/index.txt" in error and "--allow-dirty" in error and "build(git=" in error
    assert "and 3 more" in error  # 8 changes: 5 named
    assert not repo.target.exists()


def test_allow_dirty_deploys_with_a_warning_and_says_so_in_the_revision(repo: Project) -> None:
    head = git(repo.root, "rev-parse", "HEAD")
    repo.write("app/index.txt", "edited\n")

    result = repo.cli("deploy", "--env", "dev", "--revision", "HEAD", "--allow-dirty")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "app/index.txt" in result.stdout + result.stderr
    assert (repo.target / "current" / "index.txt").read_text() == "edited\n"
    assert revision_file(repo)[1] == f"{head}-dirty"
    assert repo.log()[-1]["revision"] == f"{head}-dirty"


def test_a_dry_run_of_a_changed_working_tree_warns_and_goes_on(repo: Project) -> None:
    repo.write("app/index.txt", "edited\n")
    reporter = RecordingReporter()
    loaded = actions.load(repo.root / "deploy.toml", "dev")
    outcome = actions.deploy(loaded, reporter=reporter, revision="HEAD", dry_run=True)
    assert outcome.dry_run
    [warning] = [e for e in reporter.events if e.kind == "warning"]
    assert "app/index.txt" in warning.message and "would refuse" in warning.message
    assert warning.data == {"dry_run": True}
    assert not repo.target.exists()


def test_ignored_files_and_the_deploy_target_are_not_changes(repo: Project) -> None:
    repo.write("app/__pycache__/x.pyc", "ignored\n")
    (repo.root / ".gitignore").write_text("__pycache__/\n")  # target/ no longer ignored
    commit_all(repo.root, "target not ignored")
    reporter = RecordingReporter()
    loaded = actions.load(repo.root / "deploy.toml", "dev")
    actions.deploy(loaded, reporter=reporter, revision="HEAD", clock=repo.clock)
    assert repo.target.is_dir()
    # the deploy's own output under the project dir does not make the next deploy dirty
    actions.deploy(loaded, reporter=reporter, revision="HEAD", clock=repo.clock)
    assert len(repo.release_dirs()) == 2
    assert "warning" not in reporter.kinds()


def test_the_deploys_own_events_file_is_not_a_change(repo: Project) -> None:
    result = repo.cli("deploy", "--env", "dev", "--revision", "HEAD", "--events", "events.jsonl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo.root / "events.jsonl").read_text().count("deploy.ok") == 1


def test_a_git_build_does_not_mind_a_changed_working_tree(repo: Project) -> None:
    use_git_build(repo)
    repo.write("app/index.txt", "edited\n")
    reporter = RecordingReporter()
    loaded = actions.load(repo.root / "deploy.toml", "dev")
    actions.deploy(loaded, reporter=reporter, revision="HEAD", clock=repo.clock)
    assert "warning" not in reporter.kinds()
    assert FULL_ID.fullmatch(revision_file(repo)[1])


# ------------------------------------------------------------------ projects outside git


def test_a_project_outside_git_keeps_free_revision_labels(project: Project) -> None:
    project.write("pipelines/web.py", BASIC_PIPELINE)
    project.write("app/index.txt", "changed: no git, no dirty check\n")
    project.deploy(revision="v1.2-label")
    assert revision_file(project)[1] == "v1.2-label"
    loaded = actions.load(project.root / "deploy.toml", "dev")
    actions.deploy(loaded, reporter=RecordingReporter(), clock=project.clock)
    assert revision_file(project)[1] == "unknown"
