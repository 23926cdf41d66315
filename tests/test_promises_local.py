"""The promises, attacked on this machine: shared data never lost, the release log survives torn
and failed writes, config follows code, a lost lock stops the deploy, the layout is read before
anything changes, and any failure after contact goes through the failure path.

Deploys run for real through the local backend into temporary directories; a full disk is a
small tmpfs (root only; CI runs as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from deploylib import (
    DeployFailed,
    LockLost,
    Pipeline,
    StepContext,
    build,
    command,
    push,
    run,
    step,
    switch,
    verify,
)
from deploylib.commands import Command, Operation, Result
from deploylib.config import StrategySettings
from deploylib.errors import ConfigError
from deploylib.hosts import Host
from deploylib.remote.layout import Layout
from deploylib.remote.lock import LOCK_LOST_EXIT, unlock_command
from deploylib.remote.release import link_shared
from deploylib.testing import FakeFleet, deploy_with_fakes, environment
from deploylib.whereabouts import Doubt
from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` on ``path`` for the duration (root only)."""
    if os.geteuid() != 0:
        pytest.skip("a small disk (tmpfs) needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "dl-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last block; return the file to remove to free it."""
    filler = disk / "FILLER"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


# ---------------------------------------------------------------------------- shared data


def test_nothing_is_linked_or_removed_through_a_symlink(tmp_path: Path) -> None:
    """Linking ``public/uploads`` into a release whose ``public`` is already a link (an earlier
    shared path, or the artifact's own symlink) must fail without touching what it points at."""
    release, shared = tmp_path / "releases" / "R", tmp_path / "shared"
    (shared / "public" / "uploads").mkdir(parents=True)
    (shared / "public" / "uploads" / "photo.jpg").write_text("user data")
    release.mkdir(parents=True)
    script = " && ".join(
        link_shared(str(release), str(shared), "public", is_file=False)
        + link_shared(str(release), str(shared), "public/uploads", is_file=False)
    )
    result = sh(script)
    assert result.returncode == 1
    assert "is a symlink" in result.stderr
    assert (shared / "public" / "uploads" / "photo.jpg").read_text() == "user data"

    outside = tmp_path / "outside"
    (outside / "uploads").mkdir(parents=True)
    (outside / "uploads" / "keep").write_text("not ours")
    other = tmp_path / "releases" / "S"
    other.mkdir()
    (other / "public").symlink_to(outside)  # the artifact carries a link
    result = sh(" && ".join(link_shared(str(other), str(shared), "public/uploads", is_file=False)))
    assert result.returncode == 1
    assert (outside / "uploads" / "keep").read_text() == "not ours"


def test_an_artifact_link_on_a_shared_path_fails_the_deploy_and_loses_nothing(
    project: Project,
) -> None:
    outside = project.root.parent / "outside"
    (outside / "uploads").mkdir(parents=True)
    (outside / "uploads" / "keep").write_text("not ours")
    project.write(
        "deploy.toml",
        BASIC_TOML.replace('shared_dirs = ["log"]', 'shared_dirs = ["public/uploads"]'),
    )
    first, _ = project.deploy()
    (project.target / "shared" / "public" / "uploads" / "photo.jpg").write_text("user data")
    (project.root / "app" / "public").symlink_to(outside)

    with pytest.raises(DeployFailed) as failure:
        project.deploy()

    assert "is a symlink" in str(failure.value)
    assert project.current() == first.release
    assert (outside / "uploads" / "keep").read_text() == "not ours"
    assert (project.target / "shared" / "public" / "uploads" / "photo.jpg").exists()


# ---------------------------------------------------------------------------- the release log


def test_a_torn_log_line_is_reported_never_glued_and_nothing_is_guessed(project: Project) -> None:
    a, _ = project.deploy(revision="aaaa")
    b, _ = project.deploy(revision="bbbb")
    log = project.target / ".deploylib" / "releases.jsonl"
    with log.open("a") as file:
        file.write('{"time": "2026-03-01T00:02:00+00:00", "event": "dep')  # a write cut short
    c, report = project.deploy(revision="cccc")

    lines = log.read_text().splitlines()
    assert lines[2] == '{"time": "2026-03-01T00:02:00+00:00", "event": "dep'
    assert json.loads(lines[3])["release"] == c.release  # on a line of its own
    warnings = [e.message for e in report.events if e.kind == "warning"]
    assert any("cleanup skipped" in w and "(3 of" in w for w in warnings), warnings
    assert project.release_dirs() == {a.release, b.release, c.release}

    result = project.cli("rollback", "--env", "dev")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot be read" in result.stdout + result.stderr and "--to" in result.stdout
    assert project.current() == c.release
    status = project.cli("status", "--env", "dev", "--json")
    assert status.returncode == 0
    assert "cannot be read" in json.loads(status.stdout)[0]["history_problem"]
    assert project.rollback(to=b.release).release == b.release


def test_a_full_disk_at_the_log_write_loses_no_release_and_rollback_stays_exact(
    project: Project,
) -> None:
    """The deploy whose log line could not be written (disk full) is live; the next deploy's
    line says what it replaced, so cleanup keeps it and rollback goes back to it."""
    with small_disk(project.target, "6m") as disk:
        project.write("deploy.toml", BASIC_TOML.replace("keep_releases = 3", "keep_releases = 1"))
        project.deploy(revision="aaaa")
        project.deploy(revision="bbbb")
        # C fills the disk after it is verified: its log line cannot be written
        project.write(
            "pipelines/web.py",
            BASIC_PIPELINE.replace(
                "    verify(",
                f'    run("dd if=/dev/zero of={disk}/FILLER bs=64k || true"),\n    verify(',
            ),
        )
        c, report = project.deploy(revision="cccc")
        assert any("could not write the release log" in e.message for e in report.events)
        assert project.current() == c.release
        (disk / "FILLER").unlink()
        project.write("pipelines/web.py", BASIC_PIPELINE)
        log = (project.target / ".deploylib" / "releases.jsonl").read_text()
        assert log.endswith("\n") and all(json.loads(line) for line in log.splitlines())

        project.deploy(revision="dddd")
        assert c.release in project.release_dirs()  # not in the log, but live before d: kept
        assert project.rollback().release == c.release
        assert project.current() == c.release


# ---------------------------------------------------------------------------- config follows code


def env_of(project: Project, where: str = "current") -> dict[str, str | None]:
    return dict(dotenv_values(project.target / where / ".env"))


def test_put_back_and_rollback_restore_config_with_code(project: Project) -> None:
    project.write(".env", "SECRET_KEY=one\n")
    first, _ = project.deploy()
    project.write(".env", "SECRET_KEY=two\n")
    project.write("app/BROKEN", "")

    with pytest.raises(DeployFailed):
        project.deploy()

    assert project.current() == first.release
    assert env_of(project) == env_of(project, "shared") == {"SECRET_KEY": "one"}

    (project.root / "app" / "BROKEN").unlink()
    second, _ = project.deploy()
    assert env_of(project, "shared") == {"SECRET_KEY": "two"}
    project.rollback()
    assert project.current() == first.release
    assert env_of(project, "shared") == {"SECRET_KEY": "one"}
    assert env_of(project, f"releases/{second.release}") == {"SECRET_KEY": "two"}


def test_a_failed_prepare_leaves_the_live_config_untouched(project: Project) -> None:
    project.write(".env", "SECRET_KEY=one\n")
    project.deploy()
    before = (project.target / "shared" / ".env").read_bytes()
    project.write(".env", "SECRET_KEY=two\n")
    project.write("app/FAIL_PREPARE", "")
    with pytest.raises(DeployFailed):
        project.deploy()
    assert (project.target / "shared" / ".env").read_bytes() == before


def test_a_shared_env_file_from_before_is_kept_for_the_releases_that_read_it(
    project: Project,
) -> None:
    """Releases made when shared/.env was one file shared by all keep its values."""
    first, _ = project.deploy()
    old = project.target / "releases" / first.release / ".env"
    shared_env = project.target / "shared" / ".env"
    shared_env.unlink()
    shared_env.write_text('SECRET_KEY="old"\n')
    old.unlink()
    old.symlink_to(shared_env)
    project.write(".env", "SECRET_KEY=new\n")
    project.write("app/BROKEN", "")

    with pytest.raises(DeployFailed):
        project.deploy()

    assert not old.is_symlink() and dotenv_values(old) == {"SECRET_KEY": "old"}
    assert dotenv_values(shared_env) == {"SECRET_KEY": "old"}  # follows current: the old one
    assert (project.target / "shared" / ".env.before-release-env").read_text() == (
        'SECRET_KEY="old"\n'
    )


# ---------------------------------------------------------------------------- after contact


@pytest.mark.parametrize("template", ["echo {host_adress}", "echo {port}"])
def test_a_placeholder_typo_in_a_custom_step_is_refused_before_contact(
    project: Project, template: str
) -> None:
    project.write(
        "pipelines/web.py",
        "from deploylib import Pipeline, build, push, switch, verify, command, step\n\n"
        f"@step\ndef typo(ctx):\n    yield {template!r}\n\n"
        "pipeline = Pipeline(\n"
        '    build("tar -czf {artifact} -C app ."), push(), switch(), typo,\n'
        '    verify(command("true")),\n)\n',
    )
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step typo" in result.stdout + result.stderr
    assert not project.target.exists()  # no host was contacted


def test_an_error_found_after_the_switch_puts_the_fleet_back_exit_1() -> None:
    """A step that fails in a way validation could not see (here: a placeholder its function
    only asks for once the build ran) is a deploy failure: every switched host goes back."""
    armed: list[bool] = []

    @step
    def late(ctx: StepContext) -> Iterator[str]:
        if armed and ctx.host.name == "h3":
            yield "echo {port}"

    hosts = [Host(f"h{i}", f"h{i}") for i in range(1, 5)]
    env = environment(hosts=hosts, strategy=StrategySettings(kind="rolling", batch=2))
    fleet = FakeFleet()
    fleet.controller.respond(lambda op: armed.append(True) if "tar" in op.line else None)
    pipeline = Pipeline(
        build("tar -czf {artifact} ."),
        push(),
        switch(),
        late,
        verify(command("true"), attempts=1, wait=0),
    )
    error, report = deploy_with_fakes(env, pipeline, fleet)

    assert isinstance(error, DeployFailed) and error.exit_code == 1, error
    assert error.placement == {h.name: None for h in hosts}
    assert "every target is back" in str(error)
    for host in hosts:
        descriptions = [op.description for op in fleet[host.name].operations]
        assert descriptions[-2:] == ["record", "unlock"]
    assert "deploy.failed" in report.kinds()


# ---------------------------------------------------------------------------- locks


def test_a_lock_held_from_another_pid_namespace_is_alive(project: Project) -> None:
    """Same host name, a pid that is not visible here: still a live deploy."""
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root")
    project.deploy()
    # inside, the deploy's pid is one no process has out here (as in a CI container)
    in_namespace = 'echo 77770 > /proc/sys/kernel/ns_last_pid && "$@"'
    prefix = ("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", in_namespace, "sh")
    holder = project.start_slow_deploy(4, *prefix)
    owner = json.loads((project.target / ".deploylib" / "lock" / "owner.json").read_text())
    assert owner["pid"] > 77770 and not Path(f"/proc/{owner['pid']}").exists()
    try:
        unlock = project.cli("unlock", "--env", "dev")
        assert unlock.returncode == 3, unlock.stdout + unlock.stderr
        assert "STALE" not in unlock.stdout + unlock.stderr
        second = project.cli("deploy", "--env", "dev")
        assert second.returncode == 3 and "STALE" not in second.stdout + second.stderr
        assert (project.target / ".deploylib" / "lock").is_dir()
    finally:
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, out + err
    assert [e["outcome"] for e in project.log()] == ["success", "success"]


@pytest.mark.parametrize("how", ["removed", "taken over"])
def test_a_deploy_that_lost_its_lock_stops_before_switching(project: Project, how: str) -> None:
    first, _ = project.deploy()
    process = project.start_slow_deploy(2)
    lock = project.target / ".deploylib" / "lock"
    subprocess.run(["rm", "-rf", str(lock)], check=True)
    if how == "taken over":
        project.hold_lock({"user": "other", "token": "ffffffffffffffff"})
    out, err = process.communicate(timeout=60)

    assert process.returncode == 3, out + err
    assert "removed or taken over" in out + err
    assert project.current() == first.release
    assert [e["outcome"] for e in project.log()] == ["success"]  # nothing written without it
    if how == "taken over":
        assert json.loads((lock / "owner.json").read_text())["user"] == "other"  # left alone
    else:
        assert not lock.exists()


def test_unlock_removes_only_the_lock_with_its_token(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    lock = tmp_path / ".deploylib" / "lock"
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({"token": "aaaaaaaaaaaaaaaa"}))
    (tmp_path / ".deploylib" / "lock.bbbbbbbbbbbbbbbb").mkdir()  # a stage left by a cut-off lock

    other = sh(unlock_command(layout, "bbbbbbbbbbbbbbbb").line)
    assert other.returncode == 1 and lock.is_dir()
    assert not (tmp_path / ".deploylib" / "lock.bbbbbbbbbbbbbbbb").exists()
    assert sh(unlock_command(layout, "aaaaaaaaaaaaaaaa").line).returncode == 0
    assert not lock.exists()


def test_a_lock_command_cut_off_is_released_by_its_token() -> None:
    """When the lock command's outcome is unknown (interrupted, link lost), the clean-up still
    removes a lock with this deploy's token: none is left behind."""
    env = environment(hosts=["a", "b"])
    fleet = FakeFleet()
    fleet["b"].respond(
        lambda op: Result(130, stderr="interrupted") if op.description == "lock" else None
    )
    error, _ = deploy_with_fakes(env, Pipeline(run("x")), fleet)
    assert isinstance(error, DeployFailed)
    assert [op.description for op in fleet["b"].operations] == ["lock", "unlock"]
    assert error.placement["b"] is None and error.doubts["b"] == Doubt("unread")
    assert "  b: unknown (its state could not be read)" in str(error)


def test_a_full_disk_at_lock_leaves_no_lock_and_says_where_hosts_are(project: Project) -> None:
    first, _ = project.deploy()
    with small_disk(project.target / ".deploylib", "1m") as disk:
        filler = fill(disk)
        result = project.cli("deploy", "--env", "dev")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "could not write the deploy lock" in result.stdout + result.stderr
        assert f"local: {first.release}" in result.stdout  # not "(no release)"
        assert not list(disk.glob("lock*"))
        filler.unlink()


# ---------------------------------------------------------------------------- layout


@pytest.mark.parametrize("kind", ["directory", "foreign link"])
def test_a_layout_deploylib_did_not_make_is_refused_before_anything_changes(
    project: Project, kind: str
) -> None:
    current = project.target / "current"
    project.target.mkdir()
    if kind == "directory":
        current.mkdir()
        (current / "index.html").write_text("hand-made")
    else:
        current.symlink_to("/opt/somewhere")
    result = project.cli("deploy", "--env", "dev")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was changed" in result.stdout and str(current) in result.stdout
    assert not (project.target / "releases").exists() or not project.release_dirs()
    assert not list(project.target.glob(".current-*"))
    assert not (project.target / ".deploylib" / "lock").exists()
    if kind == "directory":
        assert (current / "index.html").read_text() == "hand-made"
    else:
        assert os.readlink(current) == "/opt/somewhere"


def test_put_back_to_a_live_release_without_revision_works(project: Project) -> None:
    first, _ = project.deploy()
    (project.target / "releases" / first.release / "REVISION").unlink()
    project.write("app/BROKEN", "")
    with pytest.raises(DeployFailed) as failure:
        project.deploy()
    assert failure.value.exit_code == 1 and "every target is back" in str(failure.value)
    assert project.current() == first.release


def test_a_switch_that_fails_says_what_is_missing_and_where_current_points() -> None:
    env = environment()
    fleet = FakeFleet()

    def answer(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.description.startswith("switch to"):
            return Result(1, stderr="/srv/app/releases/R/REVISION is missing; current points at X")
        return None

    fleet["local"].respond(answer)
    error, _ = deploy_with_fakes(
        env, Pipeline(build("tar -czf {artifact} ."), push(), switch()), fleet
    )
    assert isinstance(error, DeployFailed)
    assert "REVISION is missing; current points at X" in str(error)


# ---------------------------------------------------------------------------- uploads


def test_partial_uploads_left_by_interrupted_deploys_are_removed(project: Project) -> None:
    uploads = project.target / ".deploylib" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "20260101T000000Z-old.tar.gz.part").write_bytes(b"x" * 1000)
    (uploads / ".upload-abc").write_bytes(b"x" * 1000)
    project.deploy()
    assert not list(uploads.iterdir())


# ---------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--hosts", ","], "--hosts"),
        (["--roles", " , "], "--roles"),
        (["--revision", "abc\n"], "--revision"),
    ],
)
def test_arguments_naming_nothing_are_usage_errors(
    project: Project, args: list[str], key: str
) -> None:
    result = project.cli("deploy", "--env", "dev", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr
    assert not project.target.exists()


def test_a_pipeline_that_exits_at_import_is_a_config_error(project: Project) -> None:
    project.write("pipelines/web.py", "import sys\nsys.exit(3)\n")
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pipelines/web.py" in result.stderr and "sys.exit" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_negative_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        run("true", timeout=-5)


def test_lock_lost_exit_code_is_three() -> None:
    assert LockLost("x", {}).exit_code == 3 and LOCK_LOST_EXIT != 3


def test_a_shared_env_kept_on_the_server_is_left_alone_without_env_files(
    project: Project,
) -> None:
    """With no env files in the project, deploylib does not manage the config: a shared/.env
    kept on the server by hand (as with Capistrano's linked_files) stays the config."""
    shared_env = project.target / "shared" / ".env"
    shared_env.parent.mkdir(parents=True)
    shared_env.write_text("DATABASE_URL=postgres://kept-on-the-server\n")
    first, _ = project.deploy()
    second, _ = project.deploy()
    assert not shared_env.is_symlink()
    assert shared_env.read_text() == "DATABASE_URL=postgres://kept-on-the-server\n"
    for release in (first.release, second.release):
        linked = project.target / "releases" / release / ".env"
        assert os.readlink(linked) == str(shared_env)  # listed in shared_files: linked
    project.rollback()
    assert dotenv_values(project.target / "current" / ".env") == {
        "DATABASE_URL": "postgres://kept-on-the-server"
    }
