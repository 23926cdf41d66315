"""deploy.toml and env files: parsed, interpolated, validated, resolved for one environment.

This is the only module that reads env files. Nothing here touches a target: every mistake is
a ``ConfigError`` naming the file and key, raised before a deploy starts.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploylib.errors import ConfigError
from deploylib.hosts import LOCAL_HOST, Host
from deploylib.secrets import Redactor, Secret

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INTERPOLATION_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
DEFAULT_CONFIG = "deploy.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostEntry(_Model):
    address: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-\[\]]+$")]
    user: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    roles: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = []
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")] | None = None


class SSHSettings(_Model):
    user: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new: bool = False
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    channel_timeout: Annotated[float, Field(gt=0)] = 10.0
    alive_interval: Annotated[float, Field(gt=0)] = 5.0
    alive_count_max: Annotated[int, Field(ge=1)] = 3
    parallel: Annotated[int, Field(ge=1, le=1000)] = 32


HostCount = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")]


class StrategySettings(_Model):
    kind: Literal["all", "rolling", "canary", "blue_green"] = "all"
    batch: HostCount | None = None  # hosts per batch: a number or "25%"
    canary: HostCount | None = None  # hosts in the canary batch
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = None
    proxy: Literal["nginx"] | None = None
    upstream_file: str | None = None
    proxy_reload: str | None = None
    drain: Annotated[float, Field(ge=0)] = 10.0


class NotifySettings(_Model):
    webhook: str | None = None


RelPath = Annotated[str, Field(min_length=1)]


class _Overridable(_Model):
    """Settings allowed both at the top level and inside an environment."""

    deploy_to: Annotated[str, Field(min_length=1)] | None = None
    keep_releases: Annotated[int, Field(ge=1)] | None = None
    pipeline: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")] | None = None
    shared_dirs: list[RelPath] | None = None
    shared_files: list[RelPath] | None = None
    metrics_file: str | None = None
    public_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = None
    command_timeout: Annotated[float, Field(gt=0)] | None = None
    step_timeout: Annotated[float, Field(gt=0)] | None = None
    env_file: str | None = None
    ssh: SSHSettings | None = None
    strategy: StrategySettings | None = None
    notify: NotifySettings | None = None


class EnvironmentModel(_Overridable):
    hosts: Annotated[list[str | HostEntry], Field(min_length=1)]
    confirm: bool = False


class ProjectModel(_Overridable):
    app: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    environments: Annotated[dict[str, EnvironmentModel], Field(min_length=1)]


@dataclass(frozen=True)
class Environment:
    """Everything one deploy needs to know about its environment, resolved and validated."""

    project_dir: Path
    config_file: Path
    app: str
    name: str
    deploy_to: str
    keep_releases: int
    pipeline: str
    shared_dirs: tuple[str, ...]
    shared_files: tuple[str, ...]
    hosts: tuple[Host, ...]
    confirm: bool
    command_timeout: float
    step_timeout: float
    ssh: SSHSettings
    strategy: StrategySettings
    notify: NotifySettings
    metrics_file: str | None = None
    variables: Mapping[str, str | Secret] = field(default_factory=dict)
    redactor: Redactor = field(default_factory=Redactor)
    #: what ``${VAR}`` means on this machine: the environment, then env-file values on top
    lookup: Mapping[str, str] = field(default_factory=dict, repr=False)

    def pipeline_file(self, name: str | None = None) -> Path:
        return self.project_dir / "pipelines" / f"{name or self.pipeline}.py"


DEFAULTS: dict[str, Any] = {
    "keep_releases": 5,
    "pipeline": "web",
    "shared_dirs": [],
    "shared_files": [],
    "command_timeout": 600.0,
    "step_timeout": 1800.0,
}


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
    return _validate(raw, config_file), raw


def load_environment(
    config_file: Path | str = DEFAULT_CONFIG,
    env: str = "",
    *,
    environ: Mapping[str, str] | None = None,
) -> Environment:
    """Load and resolve one environment of ``config_file``; raises ``ConfigError``."""
    config_file = Path(config_file).absolute()
    environ = os.environ if environ is None else environ
    project, raw = load_project(config_file)
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
    variables, redactor = _load_variables(project, env_model, env, project_dir, environ)
    lookup: dict[str, str] = {
        **environ,
        **{k: (v.reveal() if isinstance(v, Secret) else v) for k, v in variables.items()},
    }
    # only the settings this deploy uses are filled: another environment's ${VAR} may well
    # be unset here (its env_file is not loaded)
    interpolated = {
        key: value
        if key == "environments"
        else _interpolate(value, lookup, str(config_file), (key,))
        for key, value in raw.items()
    }
    interpolated["environments"] = {
        **raw["environments"],
        env: _interpolate(
            raw["environments"][env], lookup, str(config_file), ("environments", env)
        ),
    }
    project = _validate(interpolated, config_file)
    return _resolve(project, env, config_file, variables, redactor, lookup)


def _validate(raw: dict[str, Any], config_file: Path) -> ProjectModel:
    try:
        return ProjectModel.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # a union (hosts: string or table) reports one error per member: the deepest is the
        # one that says what is wrong with what the user wrote
        error = max(errors, key=lambda e: len(e["loc"]))
        key = _key_of(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        others = {_key_of(e["loc"]) for e in errors} - {key}
        others = {k for k in others if not key.startswith(k)}
        if others:
            message += f" (also: {', '.join(sorted(others))})"
        raise ConfigError(message, file=str(config_file), key=key) from None


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if not _is_union_tag(part))


def _is_union_tag(part: object) -> bool:
    # pydantic names the union member it tried ("str", "HostEntry") inside the location
    return part in ("str", "HostEntry", "int")


def _load_variables(
    project: ProjectModel,
    env_model: EnvironmentModel,
    env: str,
    project_dir: Path,
    environ: Mapping[str, str],
) -> tuple[dict[str, str | Secret], Redactor]:
    files: list[tuple[Path, bool]] = [(project_dir / ".env", False)]
    explicit = env_model.env_file or project.env_file
    if explicit:
        files.append((_project_path(project_dir, explicit), True))
    else:
        files.append((project_dir / f".env.{env}", False))
    public = set(env_model.public_env or project.public_env or [])
    values: dict[str, str] = {}
    for path, required in files:
        if not path.is_file():
            if required:
                raise ConfigError(
                    "env file not found", file=str(path), key=f"environments.{env}.env_file"
                )
            continue
        try:
            loaded = dotenv_values(path, interpolate=True)
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", file=str(path)) from None
        for name, value in loaded.items():
            if not ENV_VAR_RE.match(name):
                raise ConfigError("not a valid variable name", file=str(path), key=name)
            values[name] = value or ""
    redactor = Redactor()
    variables: dict[str, str | Secret] = {}
    for name, value in values.items():
        value = environ.get(name, value)
        if name in public:
            variables[name] = value
        else:
            variables[name] = Secret(value)
            redactor.add(value)
    return variables, redactor


def _project_path(project_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


def _interpolate(value: Any, lookup: Mapping[str, str], file: str, key: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, lookup, file, (*key, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, lookup, file, (*key, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def fill(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in lookup and lookup[name] != "":
            return lookup[name]
        if default is not None:
            return default
        if name in lookup:
            return ""
        raise ConfigError(
            f"variable ${{{name}}} is not set (not in the environment, .env or the env_file)",
            file=file,
            key=".".join(key),
        )

    return INTERPOLATION_RE.sub(fill, value)


def _resolve(
    project: ProjectModel,
    env: str,
    config_file: Path,
    variables: dict[str, str | Secret],
    redactor: Redactor,
    lookup: dict[str, str],
) -> Environment:
    env_model = project.environments[env]
    file = str(config_file)

    def setting(name: str) -> Any:
        value = getattr(env_model, name)
        if value is None:
            value = getattr(project, name)
        if value is None:
            value = DEFAULTS.get(name)
        return value

    hosts = tuple(
        _parse_host(entry, env, index, file) for index, entry in enumerate(env_model.hosts)
    )
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError(
            "the same host is listed twice", file=file, key=f"environments.{env}.hosts"
        )
    deploy_to = setting("deploy_to")
    if deploy_to is None:
        raise ConfigError("deploy_to is not set", file=file, key=f"environments.{env}.deploy_to")
    deploy_to = _resolve_deploy_to(deploy_to, hosts, config_file.parent, file, env)
    shared_dirs = tuple(
        _shared_path(p, file, f"environments.{env}.shared_dirs") for p in setting("shared_dirs")
    )
    shared_files = tuple(
        _shared_path(p, file, f"environments.{env}.shared_files") for p in setting("shared_files")
    )
    strategy = setting("strategy") or StrategySettings()
    if strategy.kind == "blue_green":
        raise ConfigError(
            "strategy 'blue_green' is not available in this version "
            "(use 'all', 'rolling' or 'canary')",
            file=file,
            key=f"environments.{env}.strategy.kind",
        )
    notify = setting("notify") or NotifySettings()
    if notify.webhook and not re.match(r"^https?://[^\s]+$", notify.webhook):
        raise ConfigError("must be an http(s) URL", file=file, key="notify.webhook")
    unsupported = {"metrics_file": setting("metrics_file")}
    for key, value in unsupported.items():
        if value:
            raise ConfigError(
                "not available in this version of deploylib; remove it",
                file=file,
                key=key
                if env_model.model_fields_set.isdisjoint({key.split(".")[0]})
                else f"environments.{env}.{key}",
            )
    return Environment(
        project_dir=config_file.parent,
        config_file=config_file,
        app=project.app,
        name=env,
        deploy_to=deploy_to,
        keep_releases=setting("keep_releases"),
        pipeline=setting("pipeline"),
        shared_dirs=shared_dirs,
        shared_files=shared_files,
        hosts=hosts,
        confirm=env_model.confirm,
        command_timeout=setting("command_timeout"),
        step_timeout=setting("step_timeout"),
        ssh=setting("ssh") or SSHSettings(),
        strategy=strategy,
        notify=notify,
        metrics_file=setting("metrics_file"),
        variables=variables,
        redactor=redactor,
        lookup=lookup,
    )


HOST_STRING_RE = re.compile(
    r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@)?(?P<address>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)


def _parse_host(entry: str | HostEntry, env: str, index: int, file: str) -> Host:
    key = f"environments.{env}.hosts.{index}"
    if isinstance(entry, str):
        if entry == LOCAL_HOST:
            return Host(name=LOCAL_HOST, address=LOCAL_HOST)
        match = HOST_STRING_RE.match(entry)
        if not match:
            raise ConfigError(
                f"not a host: {entry!r} (expected 'local', 'address', 'user@address[:port]')",
                file=file,
                key=key,
            )
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"port {port} out of range", file=file, key=key)
        address = match["address"].strip("[]")
        return Host(name=address, address=address, user=match["user"], port=port)
    if entry.address == LOCAL_HOST:
        return Host(name=entry.name or LOCAL_HOST, address=LOCAL_HOST, roles=tuple(entry.roles))
    return Host(
        name=entry.name or entry.address,
        address=entry.address,
        user=entry.user,
        port=entry.port,
        roles=tuple(entry.roles),
    )


def _resolve_deploy_to(
    deploy_to: str, hosts: tuple[Host, ...], project_dir: Path, file: str, env: str
) -> str:
    if "\n" in deploy_to or "\0" in deploy_to:
        raise ConfigError(
            "control characters are not allowed", file=file, key=f"environments.{env}.deploy_to"
        )
    if deploy_to.startswith("~"):
        if all(h.is_local for h in hosts):
            deploy_to = str(Path(deploy_to).expanduser())
        else:
            raise ConfigError(
                "must be an absolute path on SSH hosts",
                file=file,
                key=f"environments.{env}.deploy_to",
            )
    path = PurePosixPath(deploy_to)
    if not path.is_absolute():
        if any(not h.is_local for h in hosts):
            raise ConfigError(
                "must be an absolute path on SSH hosts",
                file=file,
                key=f"environments.{env}.deploy_to",
            )
        path = PurePosixPath(project_dir) / path
    normalised = os.path.normpath(str(path))
    if normalised == "/":
        raise ConfigError(
            "may not be the root directory", file=file, key=f"environments.{env}.deploy_to"
        )
    return normalised


def _shared_path(value: str, file: str, key: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\n" in value or "\0" in value:
        raise ConfigError(
            f"{value!r} must be a relative path inside the release (no '..', not absolute)",
            file=file,
            key=key,
        )
    normalised = str(path)
    if normalised in (".", ""):
        raise ConfigError(f"{value!r} names the release itself", file=file, key=key)
    return normalised
