"""``deploylib init --preset``: files that deploy a Python web app as they are.

The real deploy needs the wheels of Flask and gunicorn on this machine without an index:
.ci/run downloads them into /opt/deploylib-test/wheels (the tests then set PIP_NO_INDEX and
PIP_FIND_LINKS, so no test contacts an index)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import program
from tests.testbed.load import free_port
from tests.testbed.offline_wheels import WHEELS, offline_env, tools_python


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        program(*args),
        cwd=cwd,
        env={**os.environ, "CI": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("preset", ["django", "flask", "fastapi"])
def test_each_preset_writes_a_pipeline_that_validates(tmp_path: Path, preset: str) -> None:
    if preset == "django":
        (tmp_path / "manage.py").write_text(
            'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
        )
    done = cli(tmp_path, "init", "--preset", preset)
    assert done.returncode == 0, done.stdout + done.stderr
    pipeline = (tmp_path / "pipelines" / "web.py").read_text()
    assert "python_env()" in pipeline
    if preset == "django":
        assert 'gunicorn("mysite.wsgi:application"' in pipeline
        assert 'schema="django"' in pipeline and "collectstatic" in pipeline
        assert "/health view" in done.stdout
    elif preset == "fastapi":
        assert 'uvicorn("app:app"' in pipeline
        assert "uvicorn-worker" in (tmp_path / "requirements.txt").read_text()
    else:
        assert 'gunicorn("app:app"' in pipeline
    assert 'contains="{release}"' in pipeline
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", str(tmp_path / "pipelines")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    dry = cli(tmp_path, "deploy", "--env", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "python_env" in dry.stdout


def test_an_unknown_preset_is_a_usage_error(tmp_path: Path) -> None:
    done = cli(tmp_path, "init", "--preset", "rails")
    assert done.returncode == 2
    assert "--preset" in done.stdout + done.stderr
    assert not (tmp_path / "deploy.toml").exists()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "wheel"), [("flask", "flask"), ("fastapi", "uvicorn_worker")])
def test_the_preset_deploys_as_written(tmp_path: Path, preset: str, wheel: str) -> None:
    """Flask through gunicorn; FastAPI through gunicorn with uvicorn's ASGI worker."""
    if not list(WHEELS.glob(f"{wheel}-*.whl")) or not list(WHEELS.glob("gunicorn-*.whl")):
        pytest.skip(f"no {wheel} and gunicorn wheels in {WHEELS} (.ci/run downloads them)")
    project = tmp_path / "site"
    project.mkdir()
    port = free_port()
    env = {**offline_env(tmp_path / "cache"), "PORT": str(port)}
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    assert cli(project, "init", "--preset", preset).returncode == 0
    assert 'build(git=".")' in (project / "pipelines" / "web.py").read_text()
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "site"],
        cwd=project,
        check=True,
    )
    pidfile = project / ".deploy" / "dev" / "shared" / "gunicorn.pid"
    try:
        first = cli(project, "deploy", "--env", "dev", "--revision", "HEAD", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        release = os.readlink(project / ".deploy" / "dev" / "current").rsplit("/", 1)[-1]
        assert get(f"http://127.0.0.1:{port}/health").strip() == release
        venv = project / ".deploy" / "dev" / "current" / ".venv"
        assert list(venv.glob(f"lib/python*/site-packages/{wheel}"))

        (project / "app.py").write_text(
            (project / "app.py").read_text().replace('"hello\\n"', '"hello again\\n"')
        )
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "again"],
            cwd=project,
            check=True,
        )
        second = cli(project, "deploy", "--env", "dev", "--revision", "HEAD", env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert get(f"http://127.0.0.1:{port}/") == "hello again\n"
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


@pytest.mark.slow
def test_the_django_preset_deploys_with_the_view_it_asks_for(tmp_path: Path) -> None:
    """A project from django-admin startproject, the preset, and only the lines init names."""
    if not list(WHEELS.glob("django-*.whl")) or not list(WHEELS.glob("gunicorn-*.whl")):
        pytest.skip(f"no Django and gunicorn wheels in {WHEELS} (.ci/run downloads them)")
    python = tools_python(tmp_path)
    project = tmp_path / "site"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(
        [str(python), "-m", "django", "startproject", "mysite", str(project)], check=True
    )
    made = cli(project, "init", "--preset", "django")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "/health view" in made.stdout
    # what init asks for: the health view, STATIC_ROOT, ALLOWED_HOSTS
    urls = project / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text() + "\nfrom pathlib import Path\nfrom django.http import HttpResponse\n\n"
        "urlpatterns += [\n"
        '    path("health",\n'
        '         lambda request: HttpResponse(Path("REVISION").read_text().split()[0]))\n'
        "]\n"
    )
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text().replace("ALLOWED_HOSTS = []", 'ALLOWED_HOSTS = ["127.0.0.1"]')
        + '\nSTATIC_ROOT = BASE_DIR / "static"\n'
    )
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "site"],
        cwd=project,
        check=True,
    )
    port = free_port()
    env = {**offline_env(tmp_path / "cache"), "PORT": str(port)}
    pidfile = project / ".deploy" / "dev" / "shared" / "gunicorn.pid"
    try:
        done = cli(project, "deploy", "--env", "dev", "--revision", "HEAD", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        current = project / ".deploy" / "dev" / "current"
        release = os.readlink(current).rsplit("/", 1)[-1]
        assert get(f"http://127.0.0.1:{port}/health") == release
        assert (current / "static" / "admin").is_dir()  # collectstatic ran
        entry = json.loads(
            (project / ".deploy" / "dev" / ".deploylib" / "releases.jsonl")
            .read_text()
            .splitlines()[-1]
        )
        assert "auth.0001_initial" in entry["schema"]  # migrated, and the state recorded
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
