"""deploylib: atomic, health-checked, rollback-safe deploys, described as a pipeline of steps.

The pipeline DSL is what ``pipelines/<name>.py`` imports from here::

    from deploylib import Pipeline, build, push, run, migrate, switch, verify, http
"""

from typing import TYPE_CHECKING, Any

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
from deploylib.secrets import Secret
from deploylib.steps import (
    build,
    migrate,
    push,
    python_env,
    rollback,
    run,
    step,
    switch,
    verify,
)

if TYPE_CHECKING:
    from deploylib.project import HostCheck, HostRun, HostStatus, Project, ReleaseRecord

__version__ = "0.1.0"

#: the Python API (docs/api.md), imported on first use: a pipeline file that imports the DSL
#: does not pay for the machinery that runs it
_API = frozenset({"Project", "HostStatus", "ReleaseRecord", "HostCheck", "HostRun"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from deploylib import project

        return getattr(project, name)
    raise AttributeError(f"module 'deploylib' has no attribute {name!r}")


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
