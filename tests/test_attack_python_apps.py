"""Attacks on python_env(), migration-aware rollback, exec and logs: each test here failed on
the code before the fix committed with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploylib.secrets import Redactor
from deploylib.streaming import LONGEST_LINE, HostLines
from tests.conftest import Project
from tests.test_migration_rollback import PIPELINE as MIGRATE_PIPELINE
from tests.test_python_env import envs, python_project, served_version, wheels

__all__ = ["wheels"]  # the fixture, used by name

SECRET = "hunter2-very-secret-value"


# ---------------------------------------------------------------- python_env()


def test_a_damaged_bundle_in_the_cache_is_made_again(project: Project, wheels: Path) -> None:
    """A bundle cut short in ~/.cache/deploylib/python (a full disk, a crash: the rename is
    not fsynced) failed every later deploy with tar's 'Unexpected EOF', naming no file, until
    someone found and removed the cache entry."""
    python_project(project)
    project.deploy(revision="r1")
    (key,) = envs(project)
    bundle = Path(os.environ["XDG_CACHE_HOME"]) / "deploylib" / "python" / f"{key}.tar"
    whole = bundle.read_bytes()
    for damaged in (whole[: len(whole) // 2 // 512 * 512], b"", whole[:-1024]):
        shutil.rmtree(project.target)  # a new host: the bundle must be sent
        bundle.write_bytes(damaged)
        done = project.cli("deploy", "--env", "dev")
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert served_version(project) == "1.0"


# ---------------------------------------------------------------- migrations


def test_a_secret_the_schema_command_prints_stays_out_of_the_release_log(
    project: Project,
) -> None:
    """The lines the schema command printed were written to releases.jsonl as they were: a
    command that prints a connection string put the password in the log on every host."""
    project.write(".env", f"DB_PASSWORD={SECRET}\n")
    pipeline = MIGRATE_PIPELINE.format(undo="").replace(
        'schema="cat {shared_path}/db.txt"',
        'schema="cat {shared_path}/db.txt; echo connecting with $DB_PASSWORD"',
    )
    project.write("pipelines/web.py", pipeline)
    project.write("app/migrations.txt", "users.0001\n")
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    log = (project.target / ".deploylib" / "releases.jsonl").read_text()
    assert "users.0001" in log
    assert SECRET not in log and "hunter2" not in log


# ---------------------------------------------------------------- exec and logs


def test_a_secret_across_the_cut_of_a_long_line_is_masked(project: Project) -> None:
    """A line longer than LONGEST_LINE is written in pieces; a secret that straddled the cut
    came out in two unmasked halves ('...hunter' then '2-very-secret-value')."""
    project.write(".env", f"API_TOKEN={SECRET}\n")
    assert project.cli("deploy", "--env", "dev").returncode == 0
    script = (
        'python3 -c \'import os, sys, time; t = os.environ["API_TOKEN"]; '
        'sys.stdout.write("x" * 65530 + t[:11]); sys.stdout.flush(); time.sleep(0.3); '
        "print(t[11:])'"
    )
    done = project.cli("exec", "--env", "dev", "--", script)
    assert done.returncode == 0, done.stderr
    assert "hunter" not in done.stdout and "secret-value" not in done.stdout
    assert "***" in done.stdout


def test_host_lines_never_cut_through_a_secret() -> None:
    redactor = Redactor([SECRET])
    written: list[str] = []
    lines = HostLines(redactor, None, None, on_line=lambda host, stream, text: written.append(text))
    sink = lines.sink("web1")
    for offset in range(-len(SECRET), 2):
        written.clear()
        text = "x" * (LONGEST_LINE + offset) + SECRET + "y" * 10
        for start in range(0, len(text), 4096):  # as chunks arrive
            sink("stdout", text[start : start + 4096])
        sink.flush()
        assert not any(part in line for line in written for part in ("hunter", "value")), offset
        assert sum(line.count("***") for line in written) == 1


def test_lines_that_is_no_number_is_a_usage_error(deployed_dir: Path) -> None:
    """``logs --lines abc`` ended in Invoke's ValueError traceback, exit 1 (the exit code of a
    deploy that failed and was put back), instead of a usage error, exit 2."""
    for value in ("abc", "1e9", "5; touch pwned", ""):
        done = subprocess.run(
            [sys.executable, "-m", "deploylib", "logs", "--env", "dev", "--lines", value],
            cwd=deployed_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert f"--lines: not a whole number: {value!r}" in done.stderr
    assert not (deployed_dir / "pwned").exists()


@pytest.fixture
def deployed_dir(project: Project) -> Path:
    return project.root


@pytest.mark.slow
def test_an_environment_of_another_python_version_is_made_again(
    project: Project, wheels: Path
) -> None:
    """The system's python3 upgraded from 3.X to 3.Y: the venv's bin/python (a link to it)
    still starts, so `python -c ''` passed, the environment was reused and the release could
    import none of its packages (its site-packages is lib/python3.X). Here the environment is
    made to look as if made by another minor version."""
    python_project(project)
    project.deploy(revision="r1")
    (key,) = envs(project)
    lib = project.target / ".deploylib" / "python" / key / "venv" / "lib"
    (made,) = lib.iterdir()
    made.rename(lib / "python3.0")
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert served_version(project) == "1.0"


def test_an_undo_that_fails_midway_does_not_claim_nothing_changed(project: Project) -> None:
    """Code stays on the live release, exit 1, and the output says the database may have
    changed: the undo rewrote it before it failed. What it holds now is recorded."""
    project.write(
        "pipelines/web.py",
        MIGRATE_PIPELINE.format(undo='undo="echo half > {shared_path}/db.txt; exit 3",'),
    )
    project.write("app/migrations.txt", "users.0001\n")
    assert project.cli("deploy", "--env", "dev").returncode == 0
    project.write("app/migrations.txt", "users.0001\nshop.0001\n")
    assert project.cli("deploy", "--env", "dev").returncode == 0
    live = project.current()
    done = project.cli("rollback", "--env", "dev")
    assert done.returncode == 1
    assert project.current() == live
    assert (project.target / "shared" / "db.txt").read_text() == "half\n"  # it did change
    output = done.stdout + done.stderr
    assert "nothing was changed" not in output
    assert "database may be partly reversed" in output and "it now has: half" in output
    assert project.log()[-1]["schema"] == ["half"]  # the next rollback compares with this
