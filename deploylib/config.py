"""deploy.toml and env files: parsed, interpolated, validated, resolved for one environment.

This is the only module that reads env files. Nothing here touches a target: every mistake is
a ``ConfigError`` naming the file and key, raised before a deploy starts.

Types are strict: a TOML value of the wrong type (``keep_releases = "5"``) is an error, never
converted; only an integer is taken where a number with a fraction is expected. Patterns match
whole strings: a trailing newline is never accepted. An error about an env file names the file
and line and says what is wrong, never what the line holds: it may be a secret.
"""

from __future__ import annotations

import io
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from dotenv.parser import Binding, parse_stream
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploylib.errors import ConfigError
from deploylib.hosts import LOCAL_HOST, Host
from deploylib.secrets import Redactor, Secret

# pydantic checks ``pattern=`` with Rust's regex engine, whose ``$`` is the end of the text only
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always used with fullmatch
WEBHOOK_RE = re.compile(r"https?://\S+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
INTERPOLATION_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
DEFAULT_CONFIG = "deploy.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class HostEntry(_Model):
    address: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-\[\]]+$")]
    user: Annotated[str, Field(pattern=USER_PATTERN)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    roles: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = []
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")] | None = None


class SSHSettings(_Model):
    user: Annotated[str, Field(pattern=USER_PATTERN)] | None = None
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
        else _interpolate(value, lookup, str(config_file), (key,), secret_names)
        for key, value in raw.items()
    }
    interpolated["environments"] = {
        **raw["environments"],
        env: _interpolate(
            raw["environments"][env],
            lookup,
            str(config_file),
            ("environments", env),
            secret_names,
        ),
    }
    project = _validate(interpolated, config_file)
    return _resolve(project, env, config_file, variables, redactor, lookup)


def _validate(raw: dict[str, Any], config_file: Path) -> ProjectModel:
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
    return part in ("str", "HostEntry", "int") or (
        isinstance(part, str) and part.startswith("constrained-")
    )


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
        values.update(read_env_file(path))
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


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of one env file, with ``${VAR}`` filled as python-dotenv fills them.

    Every line must be a comment, blank, or ``NAME=value`` with a valid name; a value that
    spans lines must be quoted. Anything else is a ``ConfigError`` naming the file and line and
    what is wrong, never the line's content (an unquoted multi-line key would be echoed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    for binding in parse_stream(io.StringIO(text)):
        problem = _binding_problem(binding)
        if problem:
            raise ConfigError(
                f"{problem}; a value that spans lines must be quoted",
                file=str(path),
                key=f"line {_first_line(binding)}",
            )
    # every line parses: python-dotenv has nothing to warn about (its warning would go to the
    # log), and interpolates exactly as a python-dotenv reader of this file would
    loaded = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {name: value or "" for name, value in loaded.items()}


def _binding_problem(binding: Binding) -> str | None:
    """What is wrong with one statement of an env file, in words that quote none of it."""
    if binding.error:
        return "cannot be read as NAME=value"
    if binding.key is None:
        return None  # a comment or blank lines
    if not ENV_VAR_RE.fullmatch(binding.key):
        return "not a valid variable name (letters, digits and _, not starting with a digit)"
    if binding.value is None:
        return "a name without '=' and a value"
    return None


def _first_line(binding: Binding) -> int:
    """The line a statement starts on (python-dotenv counts from the blank lines before it)."""
    text = binding.original.string
    blank = text[: len(text) - len(text.lstrip())]
    return binding.original.line + blank.count("\n")


def _project_path(project_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


#: the settings a secret may be interpolated into: they are never on a command line, and every
#: message that could show them is redacted
SECRET_SETTINGS = frozenset({("notify", "webhook")})


def _interpolate(
    value: Any,
    lookup: Mapping[str, str],
    file: str,
    key: tuple[str, ...],
    secrets: frozenset[str] = frozenset(),
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, lookup, file, (*key, str(k)), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, lookup, file, (*key, str(i)), secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def fill(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in secrets and tuple(key[-2:]) not in SECRET_SETTINGS:
            raise ConfigError(
                f"${{{name}}} is a secret (a value from the env files): here it would go onto "
                "command lines and into messages; list it in public_env if it is not secret",
                file=file,
                key=".".join(key),
            )
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

    def key_of(name: str) -> str:
        """Where a setting comes from: the environment's table or the top level."""
        if getattr(env_model, name) is not None or getattr(project, name) is None:
            return f"environments.{env}.{name}"
        return name

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
    shared = {
        name: [(value, _shared_path(value, file, key_of(name))) for value in setting(name)]
        for name in ("shared_dirs", "shared_files")
    }
    _refuse_overlapping_shared_paths(shared, file, key_of)
    shared_dirs = tuple(path for _, path in shared["shared_dirs"])
    shared_files = tuple(path for _, path in shared["shared_files"])
    strategy = setting("strategy") or StrategySettings()
    if strategy.kind == "blue_green":
        raise ConfigError(
            "strategy 'blue_green' is not available in this version "
            "(use 'all', 'rolling' or 'canary')",
            file=file,
            key=f"environments.{env}.strategy.kind",
        )
    notify = setting("notify") or NotifySettings()
    if notify.webhook and not WEBHOOK_RE.fullmatch(notify.webhook):
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


HOST_STRING_RE = re.compile(  # always used with fullmatch
    r"(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@)?(?P<address>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def _parse_host(entry: str | HostEntry, env: str, index: int, file: str) -> Host:
    key = f"environments.{env}.hosts.{index}"
    if isinstance(entry, str):
        if entry == LOCAL_HOST:
            return Host(name=LOCAL_HOST, address=LOCAL_HOST)
        match = HOST_STRING_RE.fullmatch(entry)
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
    if CONTROL_RE.search(deploy_to):
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
    # normpath keeps a leading "//" (POSIX leaves its meaning open; on Linux it is "/")
    normalised = "/" + os.path.normpath(str(path)).lstrip("/")
    if normalised == "/":
        raise ConfigError(
            "may not be the root directory", file=file, key=f"environments.{env}.deploy_to"
        )
    return normalised


def _shared_path(value: str, file: str, key: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or CONTROL_RE.search(value):
        raise ConfigError(
            f"{value!r} must be a relative path inside the release (no '..', not absolute)",
            file=file,
            key=key,
        )
    normalised = str(path)
    if normalised in (".", ""):
        raise ConfigError(f"{value!r} names the release itself", file=file, key=key)
    return normalised


def _refuse_overlapping_shared_paths(
    shared: Mapping[str, list[tuple[str, str]]], file: str, key_of: Callable[[str], str]
) -> None:
    """Refuse a shared path that equals, or lies inside, another (dirs and files together).

    Each shared path is a symlink from the release into ``shared/``; a path inside another
    would be linked inside a directory that is itself a link into ``shared/``, and replacing it
    there can delete shared data."""
    entries = [(name, value, path) for name, items in shared.items() for value, path in items]
    for index, (name, value, path) in enumerate(entries):
        for other_name, other_value, other_path in entries[:index]:
            relation = _overlap(path, other_path)
            if relation:
                raise ConfigError(
                    f"{value!r} ({name}) {relation} {other_value!r} ({other_name}): "
                    "shared paths may not overlap",
                    file=file,
                    key=key_of(name),
                )


def _overlap(path: str, other: str) -> str | None:
    """How two normalised relative paths overlap: "is the same path as", "is inside", ..."""
    parts, other_parts = PurePosixPath(path).parts, PurePosixPath(other).parts
    if parts == other_parts:
        return "is the same path as"
    if parts[: len(other_parts)] == other_parts:
        return "is inside"
    if other_parts[: len(parts)] == parts:
        return "contains"
    return None
