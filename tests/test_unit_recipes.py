"""Specifies the recipes' steps: what they are, and the commands they give a target."""

from __future__ import annotations

import pytest

from deploylib import ConfigError, Pipeline, build, push
from deploylib.recipes import gunicorn, gunicorn_restart, uvicorn
from deploylib.steps.builtin import Switch
from deploylib.testing import FakeFleet, deploy_with_fakes, environment


def test_gunicorn_is_a_switch_whose_restart_runs_from_the_releases_venv() -> None:
    step = gunicorn("app:app", bind="127.0.0.1:${PORT:-8000}", workers=3, preload=True)
    assert isinstance(step, Switch) and step.restart == gunicorn_restart(
        "app:app", bind="127.0.0.1:${PORT:-8000}", workers=3, preload=True
    )
    fleet = FakeFleet()
    deploy_with_fakes(environment(), Pipeline(build("true"), push(), step), fleet)
    [restart] = [c for c in fleet["local"].commands if c.description == "restart"]
    assert restart.cwd == "/srv/app/current"
    assert "current=/srv/app/current\npidfile=/srv/app/shared/gunicorn.pid\n" in restart.script
    assert (
        'set -- "$@" --chdir "$current" --bind 127.0.0.1:${PORT:-8000} --workers 3 --preload \\\n'
        '  --pid "$pidfile" --daemon --error-logfile "$log" app:app\n'
    ) in restart.script
    assert 'set -- "$current/.venv/bin/python" -m gunicorn\n' in restart.script
    assert 'kill -USR2 "$old"\n' in restart.script and 'kill -TERM "$old"\n' in restart.script


def test_uvicorn_is_gunicorn_with_the_asgi_worker() -> None:
    step = uvicorn("main:app", bind="127.0.0.1:9000")
    assert isinstance(step, Switch) and step.restart is not None
    assert "--worker-class uvicorn_worker.UvicornWorker" in step.restart
    assert step.restart == gunicorn_restart(
        "main:app", bind="127.0.0.1:9000", worker_class="uvicorn_worker.UvicornWorker"
    )


def test_bad_arguments_are_refused_when_the_pipeline_is_written() -> None:
    with pytest.raises(ConfigError, match="workers"):
        gunicorn(workers=0)
