"""deploy.toml and env files: parsed, interpolated, validated, resolved for one environment.

This package is the only reader of deploy.toml and env files. Nothing here touches a target:
every mistake is a ``ConfigError`` naming the file and key, raised before a deploy starts.

* ``schema``: the strict pydantic models of deploy.toml's tables;
* ``loading``: ``load_project`` and ``load_environment``, and the wording of validation errors;
* ``variables``: env files read, secrets wrapped, ``${VAR}`` filled in deploy.toml's values;
* ``environment``: ``Environment``, one environment resolved and checked as a whole;
* ``host_list``: the host strings and tables of an environment, read into ``Host`` values;
* ``paths``: ``deploy_to`` resolved, shared paths checked (inside the release, no overlap).

Everything callers use is importable from ``deploylib.config`` itself.
"""

from __future__ import annotations

from deploylib.config.environment import DEFAULTS, WEBHOOK_RE, Environment
from deploylib.config.host_list import HOST_STRING_RE
from deploylib.config.loading import DEFAULT_CONFIG, load_environment, load_project
from deploylib.config.paths import CONTROL_RE
from deploylib.config.schema import (
    NAME_PATTERN,
    USER_PATTERN,
    EnvironmentModel,
    HostCount,
    HostEntry,
    NotifySettings,
    ProjectModel,
    RelPath,
    SSHSettings,
    StrategySettings,
)
from deploylib.config.variables import ENV_VAR_RE, SECRET_SETTINGS, read_env_file
from deploylib.interpolation import REFERENCE_OR_ESCAPE_RE as INTERPOLATION_RE

__all__ = [
    "CONTROL_RE",
    "DEFAULTS",
    "DEFAULT_CONFIG",
    "ENV_VAR_RE",
    "HOST_STRING_RE",
    "INTERPOLATION_RE",
    "NAME_PATTERN",
    "SECRET_SETTINGS",
    "USER_PATTERN",
    "WEBHOOK_RE",
    "Environment",
    "EnvironmentModel",
    "HostCount",
    "HostEntry",
    "NotifySettings",
    "ProjectModel",
    "RelPath",
    "SSHSettings",
    "StrategySettings",
    "load_environment",
    "load_project",
    "read_env_file",
]
