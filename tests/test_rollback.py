"""A rollback undoes the last deploy and never undoes itself: checks that fail on the release
gone back to are reported (exit 1) while it stays live; ``--no-verify`` skips them."""

from __future__ import annotations

import json

from tests.conftest import Project


def test_a_rollback_whose_release_fails_its_checks_stays_and_exits_1(project: Project) -> None:
    assert project.cli("deploy", "--env", "dev").returncode == 0
    first = project.current()
    assert project.cli("deploy", "--env", "dev").returncode == 0
    second = project.current()
    assert first is not None and second not in (None, first)
    (project.target / "releases" / first / "BROKEN").write_text("")  # the old release is sick too

    result = project.cli("rollback", "--env", "dev")

    assert result.returncode == 1, result.stdout + result.stderr
    assert project.current() == first  # an emergency rollback never switches back
    out = result.stdout + result.stderr
    assert "stays live, but it fails there" in out and "local: gave up after 2 attempts" in out
    assert not (project.target / ".deploylib" / "lock").exists()
    log = (project.target / ".deploylib" / "releases.jsonl").read_text().splitlines()
    last = json.loads(log[-1])
    assert (last["event"], last["release"], last["current"]) == ("rollback", first, first)
    assert last["outcome"] == "success" and "gave up after 2 attempts" in last["error"]
    history = project.cli("releases", "--env", "dev").stdout
    assert "stays live, but fails there" in history  # the history says it, too


def test_no_verify_skips_the_checks_of_the_release_gone_back_to(project: Project) -> None:
    assert project.cli("deploy", "--env", "dev").returncode == 0
    first = project.current()
    assert project.cli("deploy", "--env", "dev").returncode == 0
    assert first is not None
    (project.target / "releases" / first / "BROKEN").write_text("")
    result = project.cli("rollback", "--env", "dev", "--no-verify", "--events", "ev.jsonl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.current() == first
    steps = [json.loads(line).get("step") for line in (project.root / "ev.jsonl").open()]
    assert "rollback" in steps and "verify" not in steps


def test_a_rollback_whose_restart_fails_stays_on_the_release_gone_back_to(
    project: Project,
) -> None:
    """Its switch happened; its restart fails there: the rollback is not undone (exit 1)."""
    pipeline = (project.root / "pipelines" / "web.py").read_text()
    project.write(
        "pipelines/web.py",
        pipeline.replace(
            'switch(restart="echo {release} >> {shared_path}/restarts")',
            'switch(restart="test ! -e RESTART_FAILS")',
        ),
    )
    assert project.cli("deploy", "--env", "dev").returncode == 0
    first = project.current()
    assert project.cli("deploy", "--env", "dev").returncode == 0
    assert first is not None
    (project.target / "releases" / first / "RESTART_FAILS").write_text("")
    result = project.cli("rollback", "--env", "dev", "--no-verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert project.current() == first
    assert "local: " in result.stdout and "(restart)" in result.stdout
