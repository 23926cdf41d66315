"""Loading deploy.toml: the file read and parsed, the environment's variables filled in, the
whole validated against the schema, and each validation error worded to name file and key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deploylib.config.environment import Environment, resolve
from deploylib.config.schema import ProjectModel
from deploylib.config.variables import interpolate, load_variables
from deploylib.errors import ConfigError
from deploylib.secrets import Secret

DEFAULT_CONFIG = "deploy.toml"


def load_project(config_file: Path) -> tuple[ProjectModel, dict[str, Any]]:
    """Parse deploy.toml without interpolation; for listing environments and env_file lookups."""
    if not config_file.is_file():
        raise ConfigError("file not found (use --config PATH)", file=str(config_file))
    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(config_file)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(config_file)) from None
    return validate(raw, config_file), raw


def load_environment(
    config_file: Path | str = DEFAULT_CONFIG,
    env: str = "",
    *,
    environ: Mapping[str, str] | None = None,
) -> Environment:
    """Load and resolve one environment of ``config_file``; raises ``ConfigError``."""
    config_file = Path(config_file).absolute()
    _, raw = load_project(config_file)
    return environment_from(raw, config_file, env, environ=environ)


def environment_from(
    raw: Mapping[str, Any],
    config_file: Path,
    env: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> Environment:
    """One environment of settings shaped like deploy.toml (parsed, or built in code), checked
    exactly as the file is; ``config_file`` is where they count as written (errors name it, and
    its folder is the project's)."""
    raw = dict(raw)
    environ = os.environ if environ is None else environ
    project = validate(raw, config_file)
    if not env:
        raise ConfigError("--env is required", key="--env")
    if env not in project.environments:
        known = ", ".join(sorted(project.environments)) or "none"
        raise ConfigError(
            f"unknown environment {env!r} (known: {known})",
            file=str(config_file),
            key=f"environments.{env}",
        )
    project_dir = config_file.parent
    env_model = project.environments[env]
    variables, redactor = load_variables(project, env_model, env, project_dir, environ)
    secret_names = frozenset(k for k, v in variables.items() if isinstance(v, Secret))
    lookup: dict[str, str] = {
        **environ,
        **{k: (v.reveal() if isinstance(v, Secret) else v) for k, v in variables.items()},
    }
    # only the settings this deploy uses are filled: another environment's ${VAR} may well
    # be unset here (its env_file is not loaded)
    interpolated = {
        key: value
        if key == "environments"
        else interpolate(value, lookup, str(config_file), (key,), secret_names)
        for key, value in raw.items()
    }
    interpolated["environments"] = {
        **raw["environments"],
        env: interpolate(
            raw["environments"][env],
            lookup,
            str(config_file),
            ("environments", env),
            secret_names,
        ),
    }
    project = validate(interpolated, config_file)
    return resolve(project, env, config_file, variables, redactor, lookup)


def validate(raw: dict[str, Any], config_file: Path) -> ProjectModel:
    try:
        return ProjectModel.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # a union (hosts: string or table; batch: number or "25%") reports one error per
        # member: the deepest, and of those one that is not about the type, says what is
        # wrong with what the user wrote
        error = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
        key = _key_of(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] in _SCALAR_TYPES and isinstance(error.get("input"), str):
            message += " (not a string: write it without quotes)"
        others = {_key_of(e["loc"]) for e in errors} - {key}
        others = {k for k in others if not key.startswith(k)}
        if others:
            message += f" (also: {', '.join(sorted(others))})"
        raise ConfigError(message, file=str(config_file), key=key) from None


_SCALAR_TYPES = ("int_type", "float_type", "bool_type")


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if not _is_union_tag(part))


def _is_union_tag(part: object) -> bool:
    # pydantic names the union member it tried ("str", "HostEntry", "constrained-int") inside
    # the location
    return part in ("str", "HostEntry", "FirewallRule", "int") or (
        isinstance(part, str) and part.startswith("constrained-")
    )
