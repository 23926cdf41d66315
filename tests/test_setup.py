"""``deploylib setup``: hosts made deploy-ready, idempotently, under the lock, recorded.

Packages, sudo and the clock are exercised with stand-in ``dpkg-query``, ``apt-get``, ``id``,
``sudo`` and ``date`` first on the PATH of the commands (on this machine: the PATH the program
runs with; on an SSH host: its own /usr/local/bin), so nothing is installed on this machine."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Fleet, Project
from tests.testbed.offline_wheels import WHEELS, offline_env

SETUP_TOML = """\
app = "demo"
deploy_to = "/srv/demo"
shared_dirs = ["log", "media/uploads"]
shared_files = [".env", "config/local.yml"]
{extra}
[environments.dev]
hosts = ["local"]
deploy_to = "target"
"""

FAKE_DPKG = """\
#!/bin/sh
# dpkg-query -W -f=FORMAT PACKAGE: installed when apt-get made its marker
for last; do :; done
if [ -e "$FAKE_ROOT/installed-$last" ] || [ "$last" = coreutils ]; then
  printf 'install ok installed'
else
  exit 1
fi
"""

FAKE_APT = """\
#!/bin/sh
echo "$*" >> "$FAKE_ROOT/apt-get.log"
[ "$1" = install ] || exit 0
for p; do case "$p" in -*|install) ;; *) touch "$FAKE_ROOT/installed-$p";; esac; done
"""


def fake_bin(root: Path, scripts: dict[str, str]) -> dict[str, str]:
    """A directory of stand-in commands first on PATH; the environment that puts it there."""
    bin_dir = root / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in scripts.items():
        path = bin_dir / name
        path.write_text(script)
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_ROOT": str(root)}


def setup_project(project: Project, extra: str = "") -> None:
    project.write("deploy.toml", SETUP_TOML.format(extra=extra))


def test_setup_makes_the_layout_once_and_says_so(project: Project) -> None:
    setup_project(project)
    dry = project.cli("setup", "--env", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would make" in dry.stdout and "shared/media/uploads" in dry.stdout
    assert not project.target.exists()  # a dry run changes nothing, locks nothing

    first = project.cli("setup", "--env", "dev")
    assert first.returncode == 0, first.stdout + first.stderr
    for made in ("releases", "shared/log", "shared/media/uploads"):
        assert (project.target / made).is_dir()
    assert (project.target / "shared" / "config" / "local.yml").read_text() == ""
    assert not (project.target / "shared" / ".env").exists()  # the env file is deploylib's
    assert not (project.target / ".deploylib" / "lock").exists()

    second = project.cli("setup", "--env", "dev")
    assert second.returncode == 0
    assert "nothing to change" in second.stdout and "make" not in second.stdout
    assert [e["event"] for e in project.log()] == ["setup", "setup"]

    # a deploy after it, and a rollback, read the log with the setup lines in it
    first_release, _ = project.deploy(revision="r1")
    second_release, _ = project.deploy(revision="r2")
    assert project.cli("setup", "--env", "dev").returncode == 0
    project.rollback()
    assert project.current() == first_release.release != second_release.release


def test_the_firewall_of_this_machine_is_left_alone(project: Project) -> None:
    setup_project(project, '[firewall]\npolicy = "drop"\nallow = [22]')
    env = fake_bin(project.root, {"nft": '#!/bin/sh\necho "$*" >> "$FAKE_ROOT/nft.log"\n'})
    done = project.cli("setup", "--env", "dev", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not applied to this machine" in done.stdout
    assert not (project.root / "nft.log").exists()


def test_missing_packages_are_installed_once(project: Project) -> None:
    setup_project(project, 'packages = ["coreutils", "nginx-light"]')
    env = fake_bin(project.root, {"dpkg-query": FAKE_DPKG, "apt-get": FAKE_APT})
    dry = project.cli("setup", "--env", "dev", "--dry-run", env=env)
    assert "would install nginx-light" in dry.stdout, dry.stdout + dry.stderr
    assert not (project.root / "apt-get.log").exists()

    done = project.cli("setup", "--env", "dev", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed nginx-light" in done.stdout
    calls = (project.root / "apt-get.log").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq --no-install-recommends nginx-light"]

    again = project.cli("setup", "--env", "dev", env=env)
    assert "nothing to change" in again.stdout
    assert len((project.root / "apt-get.log").read_text().splitlines()) == 2


def test_a_user_who_may_not_sudo_is_told_the_rule(project: Project) -> None:
    setup_project(project, 'packages = ["nginx-light"]')
    env = fake_bin(
        project.root,
        {
            "dpkg-query": FAKE_DPKG,
            "apt-get": FAKE_APT,
            "id": '#!/bin/sh\n[ "$1" = -u ] && echo 1000 || echo deploy\n',
            "sudo": "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n",
        },
    )
    done = project.cli("setup", "--env", "dev", env=env, timeout=60)
    assert done.returncode == 1
    assert "NOPASSWD: /usr/bin/apt-get" in done.stdout + done.stderr
    assert not (project.root / "apt-get.log").exists()
    assert project.log()[-1]["outcome"] == "failed"


def test_prerequisites_and_the_clock_are_reported_with_their_fix(project: Project) -> None:
    setup_project(project)
    project.write(
        "pipelines/web.py",
        "from deploylib import Pipeline, build, push, switch, python_env\n"
        'pipeline = Pipeline(build("tar -czf {artifact} -C app ."), push(), '
        'python_env(python="python3.99"), switch())\n',
    )
    env = fake_bin(project.root, {"date": "#!/bin/sh\necho $(( $(/bin/date +%s) + 120 ))\n"})
    done = project.cli("setup", "--env", "dev", env=env)
    assert done.returncode == 1  # not ready: a step needs a Python the host lacks
    output = done.stdout + done.stderr
    assert "missing python3.99" in output and "python3-venv" in output
    assert "clock is 120 s ahead" in output or "clock is 119 s ahead" in output


def test_bad_package_names_and_held_locks_change_nothing(project: Project) -> None:
    setup_project(project, 'packages = ["ok", "$(touch /tmp/x)"]')
    bad = project.cli("setup", "--env", "dev")
    assert bad.returncode == 2 and "packages" in bad.stdout + bad.stderr
    assert not project.target.exists()

    setup_project(project)
    project.hold_lock({"user": "alice", "host": "elsewhere", "pid": 1, "token": "ab" * 8})
    held = project.cli("setup", "--env", "dev")
    assert held.returncode == 3, held.stdout + held.stderr
    assert not (project.target / "releases").exists()


@pytest.mark.slow
def test_a_fresh_host_goes_from_setup_to_a_served_release(
    fleet_of: Callable[[int], Fleet],
) -> None:
    """Two commands: setup, then deploy of the bundled example, served from the host, with
    gunicorn in the release's environment (the host has only Python and sshd)."""
    if not list(WHEELS.glob("gunicorn-*.whl")):
        pytest.skip(f"no gunicorn wheel in {WHEELS} (.ci/run downloads it)")
    fleet = fleet_of(1)
    host = fleet.hosts.hosts[0]
    assert not (host.srv / "demo").exists()
    project = fleet.project
    shutil.rmtree(project.root / "app")
    shutil.copytree(REPO / "examples" / "hello", project.root / "app")
    project.write("app/requirements.txt", "gunicorn\n")
    offline = offline_env(project.root / "cache")
    project.write(
        "pipelines/web.py",
        "from deploylib import Pipeline, build, http, push, python_env, verify\n"
        "from deploylib.recipes import gunicorn\n\n"
        "pipeline = Pipeline(\n"
        '    build("tar -czf {artifact} --exclude=__pycache__ -C app ."),\n'
        "    push(),\n"
        "    python_env(),\n"
        '    gunicorn("app:app", bind="0.0.0.0:8000", workers=1),\n'
        '    verify(http("http://{host_address}:8000/health", contains="{release}"),\n'
        "           attempts=40, wait=0.25),\n"
        ")\n",
    )
    try:
        made = project.cli("setup", "--env", "fleet", env=offline)
        assert made.returncode == 0, made.stdout + made.stderr
        assert (host.srv / "demo" / "shared" / "log").is_dir()
        deployed = project.cli("deploy", "--env", "fleet", env=offline)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        release = fleet.current(host.index)
        assert release and release in get_from(host.address, 8000, "/health")
    finally:
        pidfile = host.srv / "demo" / "shared" / "gunicorn.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def get_from(address: str, port: int, path: str) -> str:
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()
