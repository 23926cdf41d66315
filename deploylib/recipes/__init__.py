"""Recipes: functions that return the steps for a process manager, so a pipeline says what
serves the app rather than how (docs/python-apps.md, "Process managers")::

    from deploylib.recipes import gunicorn

    pipeline = Pipeline(build(...), push(), gunicorn("app:app", bind="127.0.0.1:8000"), verify(...))
"""

from deploylib.recipes.container import container
from deploylib.recipes.gunicorn import gunicorn, gunicorn_restart, uvicorn
from deploylib.recipes.gunicorn_slots import gunicorn_slots
from deploylib.recipes.service import service
from deploylib.recipes.supervisord import supervisord, supervisord_restart
from deploylib.recipes.systemd import gunicorn_command, systemd, systemd_restart, systemd_unit

__all__ = [
    "container",
    "gunicorn",
    "gunicorn_command",
    "gunicorn_restart",
    "gunicorn_slots",
    "service",
    "supervisord",
    "supervisord_restart",
    "systemd",
    "systemd_restart",
    "systemd_unit",
    "uvicorn",
]
