"""``deploylib init --preset django|flask|fastapi``: a deploy.toml and pipeline that deploy a
Python web app as they are, on hosts that have only Python and sshd.

The pipeline builds what was committed (``build(git=".")``; a tarball of the directory where
the project is not in git), gives each release its environment from wheels built here
(``python_env()``), runs the framework's own checks and migrations (Django), serves the app with
gunicorn started by the deploy itself (no init system needed; systemd is one recipe away) and
checks that the live process answers the new release id on ``/health``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PRESETS = ("django", "flask", "fastapi")

#: what a preset adds to deploy.toml (``scaffold.DEPLOY_TOML`` holds the rest)
SETTINGS = (
    'public_env = ["PORT"]         # the port the app listens on (default 8000): not a secret\n'
)
PROD_HOSTS = '"deploy@203.0.113.10", { address = "203.0.113.11", roles = ["db"] }'

_HEAD = """\
\"\"\"{title}: each release gets its own virtual environment (wheels built once,
here), {extra}gunicorn is replaced without a failed request, and /health must answer the new
release id.\"\"\"

from deploylib import Pipeline, build, http, migrate, push, python_env, run, verify
from deploylib.recipes import {server}

PORT = "${{PORT:-8000}}"

pipeline = Pipeline(
    {build}
    push(),
    python_env(),  # from requirements.txt
"""

_DJANGO_STEPS = """\
    run(".venv/bin/python manage.py collectstatic --no-input", cwd="{release_path}"),
    run(".venv/bin/python manage.py check --deploy --fail-level ERROR", cwd="{release_path}"),
    # once per deploy (role "db" first); the state is recorded for migration-aware rollback
    migrate(".venv/bin/python manage.py migrate --no-input", schema="django", undo="django"),
"""

_TAIL = """\
    {server}("{app}", bind=f"127.0.0.1:{{PORT}}", workers=2),
    verify(
        http(f"http://{{{{host_address}}}}:{{PORT}}/health", contains="{{release}}"),
        attempts=20,
        wait=0.5,
        deadline=60,
    ),
)
"""

REQUIREMENTS = {
    "django": "django>=5.2,<6\ngunicorn>=23\n",
    "flask": "flask>=3\ngunicorn>=23\n",
    "fastapi": "fastapi>=0.110\ngunicorn>=23\nuvicorn-worker>=0.3\n",
}

#: a starter app with the health endpoint, written only where no app.py exists
APPS = {
    "flask": """\
from pathlib import Path

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "hello\\n"


@app.get("/health")
def health() -> str:
    # deploylib's release id: the first word of REVISION in the release directory
    return Path("REVISION").read_text().split()[0] + "\\n"
""",
    "fastapi": """\
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index() -> str:
    return "hello\\n"


@app.get("/health", response_class=PlainTextResponse)
def health() -> str:
    # deploylib's release id: the first word of REVISION in the release directory
    return Path("REVISION").read_text().split()[0] + "\\n"
""",
}

DJANGO_HEALTH = (
    "add a /health view that answers the release id, e.g. in urls.py: "
    'path("health", lambda request: HttpResponse(Path("REVISION").read_text().split()[0])) '
    "(from django.http import HttpResponse; from pathlib import Path), and set ALLOWED_HOSTS "
    "and STATIC_ROOT for `check --deploy` and `collectstatic`"
)


@dataclass(frozen=True)
class PresetFiles:
    """The preset's files besides deploy.toml, what it adds to deploy.toml, and the to-dos."""

    files: dict[Path, str]
    todo: list[str]
    settings: str = SETTINGS
    prod_hosts: str = PROD_HOSTS


def preset_files(project_dir: Path, preset: str, *, in_git: bool) -> PresetFiles:
    """The files of ``preset`` for the project in ``project_dir``."""
    build = (
        'build(git="."),  # what was committed at --revision (default HEAD)'
        if in_git
        else 'build("tar -czf {artifact} --exclude=./.git --exclude=./.deploy '
        '--exclude=./.venv --exclude=__pycache__ ."),'
    )
    server = "uvicorn" if preset == "fastapi" else "gunicorn"
    todo: list[str] = []
    if preset == "django":
        module = _django_settings_package(project_dir)
        target = f"{module}.wsgi:application"
        extra = "Django's checks and migrations run before the switch,\n"
        title = "A Django project"
        todo.append(DJANGO_HEALTH)
        todo.append(
            "point DATABASES at a database outside the release (a server, or a file under "
            "shared/): startproject's db.sqlite3 would be a new, empty one in every release"
        )
        if module == "config":
            todo.append(
                "no manage.py naming DJANGO_SETTINGS_MODULE was found: set the WSGI app in "
                'pipelines/web.py (gunicorn("<yourproject>.wsgi:application", ...))'
            )
    else:
        target = "app:app"
        extra = ""
        title = "A Flask app" if preset == "flask" else "A FastAPI app (ASGI, uvicorn workers)"
    pipeline = _HEAD.format(title=title, extra=extra, server=server, build=build)
    if preset == "django":
        pipeline += _DJANGO_STEPS
    pipeline += _TAIL.format(server=server, app=target)
    if preset != "django":
        # only the imports a pipeline uses: ruff-clean as written
        pipeline = pipeline.replace("migrate, ", "").replace("run, ", "")
    files = {
        project_dir / "pipelines" / "web.py": pipeline,
        project_dir / "requirements.txt": REQUIREMENTS[preset],
    }
    if preset in APPS:
        files[project_dir / "app.py"] = APPS[preset]
    if not in_git:
        todo.append("put the project in git (git init, commit) to deploy what was committed")
    return PresetFiles(files, todo)


def _django_settings_package(project_dir: Path) -> str:
    """The package of the settings module manage.py names (``mysite`` for mysite.settings)."""
    manage = project_dir / "manage.py"
    try:
        text = manage.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "config"
    match = re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([\w.]+)['\"]", text)
    return match.group(1).rsplit(".", 1)[0] if match else "config"
