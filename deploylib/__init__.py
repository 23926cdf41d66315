"""deploylib: atomic, health-checked, rollback-safe deploys, described as a pipeline of steps.

The pipeline DSL is what ``pipelines/<name>.py`` imports from here::

    from deploylib import Pipeline, build, push, run, migrate, switch, verify, http
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploylib.checks import command, http, prometheus, tcp
    from deploylib.commands import Command, Probe, Upload
    from deploylib.context import StepContext
    from deploylib.errors import (
        ConfigError,
        DeployError,
        DeployFailed,
        FleetInconsistent,
        LockHeld,
        LockLost,
        StepFailed,
        VerifyFailed,
    )
    from deploylib.pipeline import Pipeline
    from deploylib.project import HostCheck, HostRun, HostStatus, Project, ReleaseRecord
    from deploylib.secrets import Secret
    from deploylib.steps import (
        build,
        migrate,
        push,
        rollback,
        run,
        step,
        switch,
        verify,
    )
    from deploylib.steps.python_env import python_env

__version__ = "0.1.0"

#: where each public name lives. Each is imported on first use: ``import deploylib`` loads
#: nothing more, a pipeline file loads the DSL it names, and the Python API (docs/api.md) the
#: machinery that runs a deploy only when it is used
_HOMES = {
    **dict.fromkeys(("command", "http", "prometheus", "tcp"), "checks"),
    **dict.fromkeys(("Command", "Probe", "Upload"), "commands"),
    "StepContext": "context",
    **dict.fromkeys(
        (
            "ConfigError",
            "DeployError",
            "DeployFailed",
            "FleetInconsistent",
            "LockHeld",
            "LockLost",
            "StepFailed",
            "VerifyFailed",
        ),
        "errors",
    ),
    "Pipeline": "pipeline",
    **dict.fromkeys(("HostCheck", "HostRun", "HostStatus", "Project", "ReleaseRecord"), "project"),
    "Secret": "secrets",
    **dict.fromkeys(
        ("build", "migrate", "push", "python_env", "rollback", "run", "step", "switch", "verify"),
        "steps",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'deploylib' has no attribute {name!r}")
    value = getattr(import_module(f"deploylib.{home}"), name)
    globals()[name] = value  # found here from now on, without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "Command",
    "ConfigError",
    "DeployError",
    "DeployFailed",
    "FleetInconsistent",
    "HostCheck",
    "HostRun",
    "HostStatus",
    "LockHeld",
    "LockLost",
    "Pipeline",
    "Probe",
    "Project",
    "ReleaseRecord",
    "Secret",
    "StepContext",
    "StepFailed",
    "Upload",
    "VerifyFailed",
    "__version__",
    "build",
    "command",
    "http",
    "migrate",
    "prometheus",
    "push",
    "python_env",
    "rollback",
    "run",
    "step",
    "switch",
    "tcp",
    "verify",
]
