"""deploylib: atomic, health-checked, rollback-safe deploys, described as a pipeline of steps.

The pipeline DSL is what ``pipelines/<name>.py`` imports from here::

    from deploylib import Pipeline, build, push, run, migrate, switch, verify, http
"""

from deploylib.checks import command, http, tcp
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
from deploylib.steps import build, migrate, push, rollback, run, step, switch, verify

__version__ = "0.1.0"

__all__ = [
    "Command",
    "ConfigError",
    "DeployError",
    "DeployFailed",
    "FleetInconsistent",
    "LockHeld",
    "LockLost",
    "Pipeline",
    "Probe",
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
    "push",
    "rollback",
    "run",
    "step",
    "switch",
    "tcp",
    "verify",
]
