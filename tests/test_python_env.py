"""python_env(): a virtual environment per release, made from wheels built once on this machine,
reused while the dependency set is unchanged, removed with the last release that links to it.

Packages come from wheels the tests make (tests/wheels.py) through pip's own settings
(PIP_NO_INDEX, PIP_FIND_LINKS), so no package index is contacted."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from deploylib import Pipeline, build, push, python_env, switch
from deploylib.backends.fake import FakeBackend
from deploylib.commands import Command, Result, Upload
from deploylib.errors import ConfigError
from deploylib.python_deps import DependencyError, read_dependency_set, requirements_text
from tests.conftest import Fleet, Project
from tests.wheels import make_wheel

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command, python_env

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    python_env({args}),
    switch(),
    verify(command("{{current_path}}/.venv/bin/python -c 'import dep; print(dep.VERSION)'")),
)
"""


def artifact(tmp_path: Path, files: dict[str, str], name: str = "a.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- the dependency set


def test_the_key_covers_included_files_and_settings(tmp_path: Path) -> None:
    base = {"./requirements.txt": "dep==1.0\n-r extra.txt\n", "./extra.txt": "other==2\n"}
    first = read_dependency_set(artifact(tmp_path, base, "1.tar.gz"), None)
    same = read_dependency_set(artifact(tmp_path, {**base, "./app.py": "x"}, "2.tar.gz"), None)
    included = read_dependency_set(
        artifact(tmp_path, {**base, "./extra.txt": "other==3\n"}, "3.tar.gz"), None
    )
    assert first.source == "requirements.txt"
    assert [name for name, _ in first.files] == ["requirements.txt", "extra.txt"]
    assert first.key() == same.key()  # app code is not part of the set
    assert first.key() != included.key()  # an included file is
    assert first.key(["python3.12"]) != first.key(["python3"])


def test_sources_are_found_in_order_and_refused_clearly(tmp_path: Path) -> None:
    both = {"pyproject.toml": "[project]\nname='x'\n", "requirements.txt": "dep\n"}
    assert read_dependency_set(artifact(tmp_path, both, "b.tar.gz"), None).source == (
        "requirements.txt"
    )
    with pytest.raises(DependencyError, match="found none of"):
        read_dependency_set(artifact(tmp_path, {"app.py": ""}, "n.tar.gz"), None)
    with pytest.raises(DependencyError, match="not in the artifact"):
        read_dependency_set(artifact(tmp_path, both, "m.tar.gz"), "req/dev.txt")
    with pytest.raises(DependencyError, match="not a path inside"):
        read_dependency_set(artifact(tmp_path, both, "e.tar.gz"), "../requirements.txt")
    editable = {"requirements.txt": "-e .\n"}
    with pytest.raises(DependencyError, match="editable"):
        read_dependency_set(artifact(tmp_path, editable, "ed.tar.gz"), None)
    missing = {"requirements.txt": "-r nowhere.txt\n"}
    with pytest.raises(DependencyError, match=r"nowhere\.txt"):
        read_dependency_set(artifact(tmp_path, missing, "mi.tar.gz"), None)


def test_pylock_and_pyproject_become_requirements(tmp_path: Path) -> None:
    pylock = """\
lock-version = "1.0"
[[packages]]
name = "django"
version = "5.2.19"
[[packages]]
name = "colorama"
version = "0.4.6"
marker = "sys_platform == 'win32'"
"""
    deps = read_dependency_set(artifact(tmp_path, {"pylock.toml": pylock}, "l.tar.gz"), None)
    assert requirements_text(deps)[0] == (
        "django==5.2.19\ncolorama==0.4.6 ; sys_platform == 'win32'\n"
    )
    pyproject = """\
[project]
name = "app"
dependencies = ["django>=5", "gunicorn"]
[project.optional-dependencies]
pg = ["psycopg[binary]"]
"""
    files = {"pyproject.toml": pyproject}
    with_pg = read_dependency_set(artifact(tmp_path, files, "p.tar.gz"), None, ["pg"])
    assert requirements_text(with_pg)[0] == "django>=5\ngunicorn\npsycopg[binary]\n"
    plain = read_dependency_set(artifact(tmp_path, files, "p.tar.gz"), None)
    assert plain.key() != with_pg.key()
    unpinned = read_dependency_set(
        artifact(tmp_path, {"pylock.toml": '[[packages]]\nname = "x"\n'}, "u.tar.gz"), None
    )
    with pytest.raises(DependencyError, match="no version"):
        requirements_text(unpinned)


# ---------------------------------------------------------------- the steps


def test_python_env_must_follow_push_and_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match=r"python_env\(\) works in the new release"):
        Pipeline(build("tar -czf {artifact} ."), python_env(), push(), switch()).validate()
    with pytest.raises(ConfigError, match="installer"):
        python_env(installer="conda")
    with pytest.raises(ConfigError, match="python="):
        python_env(python="python3; rm -rf /")
    for outside in ("../requirements.txt", "/etc/passwd", "req/../../x.txt", "a\nb", " "):
        with pytest.raises(ConfigError, match="a path inside the release"):
            python_env(outside)


def test_the_bundle_is_not_sent_where_the_environment_is_usable() -> None:
    """The upload first tests the target; when the environment is there, nothing is sent."""
    backend = FakeBackend("web1")
    upload = Upload(Path("/nonexistent"), "/srv/x/bundle.tar", unless="test -f /srv/x/complete")
    backend.respond(lambda op: Result(0) if isinstance(op, Command) else None)
    assert backend.execute(upload).stdout.startswith("already there")
    assert [type(op).__name__ for op in backend.operations] == ["Command"]

    missing = FakeBackend("web2")
    missing.respond(lambda op: Result(1) if isinstance(op, Command) else None)
    assert missing.execute(upload).ok
    assert [type(op).__name__ for op in missing.operations] == ["Command", "Upload"]


# ---------------------------------------------------------------- real deploys, this machine


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of wheels pip installs from, with no index; a cache of bundles of its own."""
    directory = tmp_path / "wheels"
    for version in ("1.0", "2.0"):
        make_wheel(directory, "dep", version)
    make_wheel(directory, "helper", "1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(directory))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(directory))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return directory


def python_project(project: Project, args: str = "") -> None:
    project.write("pipelines/web.py", PIPELINE.format(args=args))
    project.write("app/requirements.txt", "dep==1.0\nhelper\n")


def envs(project: Project) -> set[str]:
    root = project.target / ".deploylib" / "python"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def venv_of(project: Project, release: str) -> str:
    return os.readlink(project.target / "releases" / release / ".venv")


def served_version(project: Project) -> str:
    python = project.target / "current" / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "import dep; print(dep.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_each_release_gets_an_environment_reused_while_unchanged(
    project: Project, wheels: Path, installer: str
) -> None:
    python_project(project, f'installer="{installer}"')
    project.deploy(revision="r1")
    assert served_version(project) == "1.0"
    (key,) = envs(project)
    made = project.target / ".deploylib" / "python" / key
    assert not (made / "bundle.tar").exists()  # the bundle goes once installed
    inode = (made / "venv" / "pyvenv.cfg").stat().st_ino

    second, _ = project.deploy(revision="r2")  # same dependencies
    assert envs(project) == {key}
    assert not (made / "bundle.tar").exists()  # not even sent
    assert (made / "venv" / "pyvenv.cfg").stat().st_ino == inode  # reused, not made again
    assert venv_of(project, second.release) == f"../../.deploylib/python/{key}/venv"

    project.write("app/requirements.txt", "dep==2.0\nhelper\n")  # one package changed
    project.deploy(revision="r3")
    assert served_version(project) == "2.0"
    assert len(envs(project)) == 2

    project.rollback()  # back to r2, and its environment with it
    assert served_version(project) == "1.0"
    assert project.current() == second.release


@pytest.mark.slow
def test_an_environment_goes_with_its_last_release(project: Project, wheels: Path) -> None:
    python_project(project)  # keep_releases = 3
    project.deploy(revision="r1")
    (old,) = envs(project)
    project.write("app/requirements.txt", "dep==2.0\nhelper\n")
    for n in range(2, 4):
        project.deploy(revision=f"r{n}")
        assert old in envs(project)  # r1 (and so its environment) is still kept
    project.deploy(revision="r4")  # r1 is removed now: nothing links to the old environment
    assert old not in envs(project)
    assert len(envs(project)) == 1
    assert served_version(project) == "2.0"


@pytest.mark.slow
def test_a_half_made_or_broken_environment_is_made_again(project: Project, wheels: Path) -> None:
    python_project(project)
    project.deploy(revision="r1")
    (key,) = envs(project)
    root = project.target / ".deploylib" / "python" / key
    (root / "complete").unlink()  # as a deploy cut off while installing leaves it
    project.deploy(revision="r2")
    assert (root / "complete").is_file()
    assert served_version(project) == "1.0"

    python = root / "venv" / "bin" / "python"
    python.unlink()  # the interpreter it was made with is gone (a system upgrade)
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    project.deploy(revision="r3")
    assert served_version(project) == "1.0"


@pytest.mark.slow
def test_a_dependency_that_cannot_be_had_fails_before_any_host(
    project: Project, wheels: Path
) -> None:
    python_project(project)
    project.deploy(revision="r1")
    before = project.current()
    project.write("app/requirements.txt", "dep==9.9\n")
    result = project.cli("deploy", "--env", "dev", env={"PIP_FIND_LINKS": str(wheels)})
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "step 'py deps' failed" in output and "dep==9.9" in output, output
    assert project.current() == before
    assert served_version(project) == "1.0"


@pytest.mark.slow
def test_from_the_index_on_the_target(project: Project, wheels: Path) -> None:
    """wheels=False: nothing built here; each target installs from its index (here pip's
    settings again: the target is this machine)."""
    python_project(project, "wheels=False")
    outcome, _ = project.deploy(revision="r1")
    assert served_version(project) == "1.0"
    (key,) = envs(project)
    bundle = Path(os.environ["XDG_CACHE_HOME"]) / "deploylib" / "python" / f"{key}.tar"
    with tarfile.open(bundle) as tar:
        assert not [n for n in tar.getnames() if n.endswith(".whl")]
    assert outcome.release == project.current()


# ---------------------------------------------------------------- real deploys, SSH hosts


@pytest.mark.slow
def test_ssh_hosts_get_environments_from_wheels_built_here(
    fleet_of: Callable[[int], Fleet], wheels: Path
) -> None:
    """The hosts have no package index: only the wheels sent with the bundle."""
    fleet = fleet_of(2)
    project = fleet.project
    python_project(project)
    project.write("app/requirements.txt", "dep==1.0\n")
    first, _ = project.deploy("fleet", revision="r1")
    second, _ = project.deploy("fleet", revision="r2")
    project.write("app/requirements.txt", "dep==2.0\n")
    third, _ = project.deploy("fleet", revision="r3")
    for host in fleet.hosts.hosts:
        root = host.srv / "demo"
        releases = fleet.release_dirs(host.index)
        venvs = {os.readlink(root / "releases" / r / ".venv") for r in releases}
        assert len(venvs) == 2  # r1 and r2 share one
        assert fleet.current(host.index) == third.release
        python = root / "current" / ".venv" / "bin" / "python"
        version = subprocess.run(
            [str(python), "-c", "import dep; print(dep.VERSION)"], capture_output=True, text=True
        )
        assert version.stdout.strip() == "2.0", version.stderr
        assert not list((root / ".deploylib" / "python").glob("*/bundle.tar"))
    assert first.release != second.release


@pytest.mark.slow
def test_a_uv_lock_is_exported_and_installed(project: Project, wheels: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (pip install -e '.[dev]' installs it)")
    project.write("pipelines/web.py", PIPELINE.format(args=""))
    project.write(
        "app/pyproject.toml",
        '[project]\nname = "site"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["dep==2.0", "helper"]\n',
    )
    locked = subprocess.run(
        [uv, "lock", "--no-index", "--find-links", str(wheels)],
        cwd=project.root / "app",
        capture_output=True,
        text=True,
        env={**os.environ, "UV_NO_CONFIG": "1"},
    )
    assert locked.returncode == 0, locked.stderr
    project.deploy(revision="r1")
    assert served_version(project) == "2.0"
    assert len(envs(project)) == 1
    bundle = next((Path(os.environ["XDG_CACHE_HOME"]) / "deploylib" / "python").glob("*.tar"))
    with tarfile.open(bundle) as tar:
        exported = tar.extractfile("requirements.txt")
        assert exported is not None
        text = exported.read().decode()
    assert "dep==2.0" in text and "helper==1.0" in text  # what uv export pinned


@pytest.mark.slow
def test_an_interpreter_the_host_lacks_fails_the_deploy_clearly(
    project: Project, wheels: Path
) -> None:
    python_project(project, 'python="python3.99"')
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 1
    assert "python3.99 is not installed on this host" in result.stdout + result.stderr
    assert project.current() is None


def test_an_environment_is_marked_complete_only_under_the_lock() -> None:
    """A build orphaned by a killed deploy (its shell goes on) must not mark complete an
    environment that a later deploy, under a lock of its own, is making."""
    from deploylib.remote import python_env as remote_env
    from deploylib.remote.layout import Layout

    token = "ab" * 8
    script = remote_env.ensure_command(
        Layout("/srv/app"), "k" * 24, "20260101T000000Z-abc", remote_env.Install(), token
    ).script
    installed = script.index("pip install")
    guard = script.index(f"*{token}*)", installed)  # the lock guard
    assert installed < guard < script.index("echo made >")
