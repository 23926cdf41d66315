"""Wheels on this machine's disk, downloaded by .ci/run (Flask, FastAPI, Django, gunicorn,
alembic), for tests that install packages with no index; and a venv with Django for the tests
that make a Django project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: wheels fetched by .ci/run, installed from with no index
WHEELS = Path("/opt/deploylib-test/wheels")


def tools_python(tmp_path: Path) -> Path:
    """A venv on this machine with Django, for django-admin and makemigrations."""
    uv = shutil.which("uv")
    venv = tmp_path / "tools"
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        install = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*install, "--no-index", "--find-links", str(WHEELS), "django"],
        check=True,
        env={**os.environ, "UV_NO_CONFIG": "1"},
    )
    return venv / "bin" / "python"


def offline_env(cache: Path, *more: Path) -> dict[str, str]:
    """The environment that makes pip and uv install only from ``WHEELS`` (and ``more``
    directories), never an index, with deploylib's bundle cache under ``cache``."""
    directories = [str(WHEELS), *(str(d) for d in more)]
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": " ".join(directories),
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": ",".join(directories),
        "XDG_CACHE_HOME": str(cache),
    }
