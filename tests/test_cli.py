"""The command line as users type it: tasks, JSON output, init, unlock, help, start-up cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import deploylib
from tests.conftest import REPO, Project, Webhook


def test_deploy_status_releases_and_rollback(project: Project) -> None:
    first = project.cli("deploy", "--env", "dev", "--revision", "aaa111")
    assert first.returncode == 0, first.stderr
    project.write("app/BROKEN", "")
    failed = project.cli("deploy", "--env", "dev", "--revision", "bbb222")
    assert failed.returncode == 1
    assert "every target is back on the release it had" in failed.stdout

    status = project.cli("status", "--env", "dev", "--json")
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert row["host"] == "local" and row["revision"] == "aaa111" and row["locked"] is False
    assert row["current"] == project.current()

    releases = project.cli("releases", "--env", "dev", "--json")
    rows = json.loads(releases.stdout)
    assert [(r["revision"], r["outcome"]) for r in rows] == [
        ("aaa111", "success"),
        ("bbb222", "rolled_back"),
    ]
    assert rows[0]["on_disk"] == ["local"] and rows[1]["on_disk"] == []
    assert rows[1]["error"].startswith("local: step 'verify' failed: gave up after 2 attempts")
    history = project.cli("releases", "--env", "dev")
    assert history.returncode == 0, history.stderr
    [failed_row] = [line for line in history.stdout.splitlines() if "bbb222" in line]
    assert "rolled_back" in failed_row and "local: step 'verify' failed" in failed_row

    table = project.cli("status", "--env", "dev")
    current = project.current()
    assert current is not None  # still on aaa111's release: the failed deploy was put back
    assert current in table.stdout and "aaa111" in table.stdout  # nothing cut

    nothing = project.cli("rollback", "--env", "dev")
    assert nothing.returncode == 1 and "no earlier release" in nothing.stdout


def test_the_release_log_and_status_say_who_deployed_from_where_and_how_long_it_took(
    project: Project,
) -> None:
    named = project.cli("deploy", "--env", "dev", env={"DEPLOYLIB_USER": "ann@example.org"})
    assert named.returncode == 0, named.stdout + named.stderr
    entry = project.log()[-1]
    assert entry["user"] == "ann@example.org"
    assert entry["controller"] == os.uname().nodename
    assert isinstance(entry["seconds"], float) and entry["seconds"] > 0
    [row] = json.loads(project.cli("status", "--env", "dev", "--json").stdout)
    assert row["deployed_by"] == "ann@example.org" and row["took"] == entry["seconds"]
    assert row["deployed_from"] == os.uname().nodename
    table = project.cli("status", "--env", "dev").stdout
    assert "ann@example.org" in table and "took" in table

    # in a git work tree, without DEPLOYLIB_USER: git's user.email
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "bob@example.org")
    git("config", "user.name", "Bob")
    (project.root / ".gitignore").write_text("target/\n")
    git("add", "-A")
    git("commit", "-q", "-m", "the app")
    plain = {k: v for k, v in os.environ.items() if k != "DEPLOYLIB_USER"}
    done = subprocess.run(
        [sys.executable, "-m", "deploylib", "deploy", "--env", "dev"],
        cwd=project.root, env={**plain, "CI": "true"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.log()[-1]["user"] == "bob@example.org"


def test_events_file_is_json_lines(project: Project) -> None:
    result = project.cli("deploy", "--env", "dev", "--events", "events.jsonl")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "deploy.start" and kinds[-1] == "deploy.ok"
    assert {"step.ok", "operation", "check.attempt"} <= set(kinds)
    assert all("ts" in e and "deploy_id" in e for e in events)


def test_check_reports_per_host_and_changes_nothing(project: Project) -> None:
    result = project.cli("check", "--env", "dev", "--json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["host"] == "local" and row["ok"] and row["writable"] and row["free_mb"] > 0
    assert not project.target.exists()


def test_unlock_removes_a_stale_lock_and_refuses_a_live_one(project: Project) -> None:
    import socket

    lock = project.hold_lock(
        {"user": "me", "host": socket.gethostname(), "pid": os.getpid(), "started_at": "now"}
    )
    (lock / "heartbeat").touch()
    alive = project.cli("unlock", "--env", "dev")
    assert alive.returncode == 3 and lock.exists()
    assert "--force" in alive.stderr
    unconfirmed = project.cli("unlock", "--env", "dev", "--force")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr and lock.exists()
    forced = project.cli("unlock", "--env", "dev", "--force", "--yes")
    assert forced.returncode == 0 and not lock.exists()

    # another machine's deploy whose heartbeat stopped 10 minutes ago: stale, removed as is
    project.hold_lock({"user": "me", "host": "elsewhere", "pid": 1})
    old = time.time() - 600
    os.utime(lock, (old, old))
    stale = project.cli("unlock", "--env", "dev")
    assert stale.returncode == 0 and "unlocked: local" in stale.stdout and not lock.exists()


def test_init_scaffolds_a_project_that_validates(tmp_path: Path) -> None:
    root = tmp_path / "My Shop"
    root.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "deploylib", "init", "--ci", "github"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    for name in (
        "deploy.toml",
        "pipelines/web.py",
        "tasks.py",
        ".env.example",
        ".github/workflows/deploy.yml",
    ):
        assert (root / name).is_file()
    assert 'app = "my-shop"' in (root / "deploy.toml").read_text()
    dry = subprocess.run(
        [sys.executable, "-m", "deploylib", "deploy", "--env", "dev", "--dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    again = subprocess.run(
        [sys.executable, "-m", "deploylib", "init"], cwd=root, capture_output=True, text=True
    )
    assert again.returncode == 0 and "left alone deploy.toml" in again.stdout


def test_help_lists_every_task() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploylib", "--list"], capture_output=True, text=True
    )
    for name in ("deploy", "rollback", "status", "releases", "check", "init", "unlock"):
        assert name in result.stdout


def test_a_piped_local_deploy_imports_neither_the_ssh_libraries_nor_rich(
    project: Project,
) -> None:
    """Its output is a pipe: plain lines, without rich (``deploylib.markup``)."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['deploylib', 'deploy', '--env', 'dev']\n"
        "try:\n    runpy.run_module('deploylib', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = [m for m in ('fabric', 'paramiko', 'rich') if m in sys.modules]\n"
        "print('IMPORTED', bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True
    )
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr


def test_the_program_and_its_tasks_collect_cycles_seldom() -> None:
    """The program (``deploylib``, ``python -m deploylib``) sets the collector's thresholds
    before its imports, and each task sets them for itself when Invoke runs it."""
    from importlib.metadata import entry_points

    from deploylib.collector import COLLECT_EVERY

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "deploylib"]
    assert script.value == "deploylib.__main__:run"
    code = (
        "import gc, sys\n"
        "sys.argv = ['deploylib', '--version']\n"
        "from deploylib.__main__ import run\n"
        "try:\n    run()\n"
        "except SystemExit:\n    pass\n"
        "print('AT', gc.get_threshold(), [m for m in ('invoke', 'pydantic') if m in sys.modules])\n"
        "import deploylib.tasks as t\n"
        "gc.set_threshold(700, 10, 10)\n"
        "t._run(lambda: None)\n"
        "print('TASK', gc.get_threshold())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"AT {COLLECT_EVERY} ['invoke']" in result.stdout, result.stdout + result.stderr
    assert f"TASK {COLLECT_EVERY}" in result.stdout
    assert COLLECT_EVERY[0] > 700


def test_importing_the_dsl_loads_none_of_the_machinery() -> None:
    """A pipeline file imports ``deploylib``: that must not pay for what runs a deploy."""
    code = (
        "import sys, deploylib, deploylib.recipes\n"
        "heavy = ('pydantic', 'rich', 'invoke', 'fabric', 'paramiko', 'tenacity')\n"
        "print('IMPORTED', [m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "IMPORTED []" in result.stdout, result.stdout + result.stderr


def test_importing_deploylib_loads_each_name_on_first_use() -> None:
    """``import deploylib`` loads the package alone; a name loads the module it lives in."""
    code = (
        "import sys, deploylib\n"
        "print('ALONE', sorted(m for m in sys.modules if m.startswith('deploylib')))\n"
        "from deploylib import Secret\n"
        "print('SECRET', 'deploylib.secrets' in sys.modules, 'deploylib.steps' in sys.modules)\n"
        "from deploylib import *\n"
        "print('ALL', all(name in globals() for name in deploylib.__all__))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ALONE ['deploylib']" in result.stdout, result.stdout + result.stderr
    assert "SECRET True False" in result.stdout
    assert "ALL True" in result.stdout


def test_public_api() -> None:
    for name in deploylib.__all__:
        assert hasattr(deploylib, name), name
    assert {
        "Pipeline",
        "build",
        "push",
        "run",
        "migrate",
        "switch",
        "verify",
        "rollback",
        "http",
        "tcp",
        "command",
        "step",
    } <= set(deploylib.__all__)
    assert (REPO / "deploylib" / "py.typed").exists()


def test_notify_webhook_gets_start_and_outcome_without_secrets(
    project: Project, webhook: Webhook
) -> None:
    received = webhook.received
    toml = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", toml + f'\n[notify]\nwebhook = "{webhook.url}"\n')
    ann = {"DEPLOYLIB_USER": "ann@example.org"}
    assert project.cli("deploy", "--env", "dev", env=ann).returncode == 0
    assert [r["event"] for r in received] == ["deploy.start", "deploy.ok"]
    assert received[1]["env"] == "dev" and received[1]["app"] == "demo"
    assert received[1]["release"] == project.current()
    # a line people read (Slack's text): who, what, where, the outcome, how long
    first = project.current()
    assert str(received[0]["text"]).startswith("ann@example.org is deploying demo ")
    text = str(received[1]["text"])
    assert text.startswith(f"ann@example.org deployed demo {first} (revision ")
    assert text.endswith(" s") and " to dev: success in " in text and "\n" not in text
    assert "http" not in text and isinstance(received[1]["seconds"], float)

    secret = "webhook-secret-value"
    project.write(".env", f"TOKEN={secret}\n")
    project.write(
        "pipelines/web.py",
        (project.root / "pipelines/web.py")
        .read_text()
        .replace('run("test ! -e FAIL_PREPARE"', 'run("echo $TOKEN >&2; false"'),
    )
    assert project.cli("deploy", "--env", "dev", env=ann).returncode == 1
    assert received[-1]["event"] == "deploy.failed"
    assert secret not in json.dumps(received) and "***" in json.dumps(received[-1])
    assert str(received[-1]["text"]).startswith(
        "ann@example.org's deploy of demo to dev failed in "
    )
    webhook.close()

    # a webhook that is down never fails a deploy: it is a warning
    project.write(
        "pipelines/web.py",
        (project.root / "pipelines/web.py")
        .read_text()
        .replace('run("echo $TOKEN >&2; false"', 'run("true"'),
    )
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "notify webhook" in result.stdout
