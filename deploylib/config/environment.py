"""``Environment``: one environment of deploy.toml, resolved — its settings over the top level's
over the defaults — and checked as a whole (hosts, paths, strategies, the metrics' settings)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploylib import placeholders
from deploylib.config.host_list import parse_host
from deploylib.config.paths import (
    refuse_overlapping_shared_paths,
    resolve_deploy_to,
    shared_path,
)
from deploylib.config.schema import (
    FirewallSettings,
    NotifySettings,
    ProjectModel,
    SSHSettings,
    StrategySettings,
    SwarmSettings,
)
from deploylib.config.variables import project_path
from deploylib.errors import ConfigError
from deploylib.firewall import refuse_cutting_ssh
from deploylib.hosts import Host
from deploylib.secrets import Redactor, Secret

WEBHOOK_RE = re.compile(r"https?://\S+")
#: the placeholders an ``upstream_file`` may hold: those that name one file per host
UPSTREAM_PLACEHOLDERS = frozenset(
    {"app", "env", "deploy_to", "current_path", "shared_path", "host", "host_address"}
)


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
    #: ``metrics_file``, absolute: node_exporter's textfile the metrics are written to
    metrics_file: str | None = None
    #: the Pushgateway the metrics are pushed to (its URL may hold a secret)
    pushgateway: str | None = None
    #: who ``sudo=True`` commands run as (``None``: root)
    become: str | None = None
    #: Debian packages ``setup`` installs where missing
    packages: tuple[str, ...] = ()
    #: the registry ``build(image=...)`` images are pushed to and pulled from
    registry: str | None = None
    variables: Mapping[str, str | Secret] = field(default_factory=dict)
    redactor: Redactor = field(default_factory=Redactor)
    #: what ``${VAR}`` means on this machine: the environment, then env-file values on top
    lookup: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: where each run's log goes on this machine (``None``: nowhere)
    log_dir: Path | None = None
    #: how many run logs are kept
    keep_logs: int = 30
    #: ``[firewall]``: what ``setup`` applies (``None``: deploylib leaves the firewall alone)
    firewall: FirewallSettings | None = None
    #: where ``firewall`` was set, for messages (``firewall`` or ``environments.X.firewall``)
    firewall_key: str = "firewall"
    #: ``"swarm"``: the release runs as a Docker Swarm service on the environment's one host,
    #: its manager (``None``: deploylib runs it, in place or on blue-green slots)
    orchestrator: str | None = None
    #: ``[swarm]``: the service and its updates (used with ``orchestrator = "swarm"``)
    swarm: SwarmSettings = field(default_factory=SwarmSettings)

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


def resolve(
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
        parse_host(entry, env, index, file) for index, entry in enumerate(env_model.hosts)
    )
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError(
            "the same host is listed twice", file=file, key=f"environments.{env}.hosts"
        )
    deploy_to = setting("deploy_to")
    if deploy_to is None:
        raise ConfigError("deploy_to is not set", file=file, key=f"environments.{env}.deploy_to")
    deploy_to = resolve_deploy_to(deploy_to, hosts, config_file.parent, file, env)
    shared = {
        name: [(value, shared_path(value, file, key_of(name))) for value in setting(name)]
        for name in ("shared_dirs", "shared_files")
    }
    refuse_overlapping_shared_paths(shared, file, key_of)
    shared_dirs = tuple(path for _, path in shared["shared_dirs"])
    shared_files = tuple(path for _, path in shared["shared_files"])
    strategy = setting("strategy") or StrategySettings()
    where = f"environments.{env}.strategy" if env_model.strategy is not None else "strategy"
    if strategy.pause and strategy.kind not in ("rolling", "canary"):
        raise ConfigError(
            f"pause is for rolling and canary, not {strategy.kind!r}",
            file=file,
            key=f"{where}.pause",
        )
    hooks = {"drain": strategy.drain, "undrain": strategy.undrain}
    for name, hook in hooks.items():
        if not isinstance(hook, str):
            continue
        if strategy.kind not in ("all", "rolling", "canary"):
            raise ConfigError(
                f"a {name} command is for all, rolling and canary", file=file, key=f"{where}.{name}"
            )
        try:
            placeholders.validate(hook, f"{where}.{name}")
        except ConfigError as exc:
            raise ConfigError(exc.message, file=file, key=f"{where}.{name}") from None
    if isinstance(strategy.drain, str) != (strategy.undrain is not None):
        raise ConfigError(
            "drain and undrain go together: a host taken out must be put back",
            file=file,
            key=f"{where}.{'undrain' if isinstance(strategy.drain, str) else 'drain'}",
        )
    if strategy.max_fail and strategy.kind != "rolling":
        raise ConfigError(
            f"max_fail is for rolling, not {strategy.kind!r}", file=file, key=f"{where}.max_fail"
        )
    for name in ("bake", "wait"):
        weighted = strategy.kind == "blue_green" and strategy.weight is not None
        if name in strategy.model_fields_set and strategy.kind != "canary" and not weighted:
            raise ConfigError(
                f"{name} is for canary (or blue_green with a weight), not {strategy.kind!r}",
                file=file,
                key=f"{where}.{name}",
            )
    refuse_bad_slots(strategy, file, where)
    notify = setting("notify") or NotifySettings()
    if notify.webhook and not WEBHOOK_RE.fullmatch(notify.webhook):
        raise ConfigError("must be an http(s) URL", file=file, key="notify.webhook")
    metrics_file = setting("metrics_file")
    if metrics_file is not None:
        metrics_file = resolve_metrics_file(metrics_file, config_file.parent, file, key_of)
    pushgateway = setting("pushgateway")
    if pushgateway is not None and not is_http_url(pushgateway):
        raise ConfigError(
            "must be an http(s) URL (the Pushgateway's, without query or fragment)",
            file=file,
            key=key_of("pushgateway"),
        )
    firewall: FirewallSettings | None = setting("firewall")
    ssh: SSHSettings = setting("ssh") or SSHSettings()
    if firewall is not None:
        refuse_cutting_ssh(firewall, hosts, ssh.port, file=file, key=key_of("firewall"))
    orchestrator = setting("orchestrator")
    swarm = swarm_settings(
        setting("swarm"), orchestrator, strategy, hosts, env, file, key_of, where
    )
    bound = min(setting("command_timeout"), setting("step_timeout"))
    if swarm.timeout is not None and swarm.timeout >= bound:
        raise ConfigError(
            f"must be less than command_timeout and step_timeout ({bound:g} s): the command "
            "that follows swarm would be cut off first, with no word of why",
            file=file,
            key=f"{key_of('swarm')}.timeout",
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
        ssh=ssh,
        strategy=strategy,
        notify=notify,
        metrics_file=metrics_file,
        pushgateway=pushgateway,
        become=setting("become"),
        packages=tuple(setting("packages") or ()),
        registry=setting("registry"),
        variables=variables,
        redactor=redactor,
        lookup=lookup,
        firewall=firewall,
        firewall_key=key_of("firewall"),
        log_dir=log_dir_of(setting("log_dir"), config_file.parent, file, key_of("log_dir")),
        keep_logs=setting("keep_logs") or 30,
        orchestrator=orchestrator,
        swarm=swarm,
    )


def swarm_settings(
    swarm: SwarmSettings | None,
    orchestrator: str | None,
    strategy: StrategySettings,
    hosts: tuple[Host, ...],
    env: str,
    file: str,
    key_of: Callable[[str], str],
    where: str,
) -> SwarmSettings:
    """``[swarm]`` goes with ``orchestrator = "swarm"``, whose environment names one host (the
    swarm manager deploylib drives the service from) and deploys all at once (swarm paces the
    tasks) or blue-green behind the manager's nginx (without weights: swarm stops the old tasks
    itself)."""
    if orchestrator is None:
        if swarm is not None:
            raise ConfigError('swarm is for orchestrator = "swarm"', file=file, key=key_of("swarm"))
        return SwarmSettings()
    if len(hosts) != 1:
        raise ConfigError(
            'orchestrator = "swarm" deploys through one host, a swarm manager: list only it '
            "(swarm places the tasks on its nodes)",
            file=file,
            key=f"environments.{env}.hosts",
        )
    if strategy.kind not in ("all", "blue_green"):
        raise ConfigError(
            f'orchestrator = "swarm" paces the tasks itself ([swarm] parallelism, delay): '
            f'the strategy is "all" (or "blue_green" behind nginx), not {strategy.kind!r}',
            file=file,
            key=f"{where}.kind",
        )
    if strategy.weight is not None:
        raise ConfigError(
            'weight is not for orchestrator = "swarm": swarm stops the old tasks once the new '
            "ones are healthy, so there is nothing to share requests with",
            file=file,
            key=f"{where}.weight",
        )
    return swarm or SwarmSettings()


#: where run logs go unless deploy.toml says otherwise (relative to the project dir)
DEFAULT_LOG_DIR = ".deploylib/logs"


def log_dir_of(value: str | None, project_dir: Path, file: str, key: str) -> Path | None:
    """``log_dir`` on this machine: the default, a path (relative to the project dir), or
    None for ``log_dir = ""``."""
    if value == "":
        return None
    text = DEFAULT_LOG_DIR if value is None else value
    if "\0" in text or "\n" in text:
        raise ConfigError("must be a path", file=file, key=key)
    path = Path(text).expanduser()
    return path if path.is_absolute() else project_dir / path


def refuse_bad_slots(strategy: StrategySettings, file: str, where: str) -> None:
    """A blue_green strategy has two distinct ports and an upstream file; the slot settings
    belong to it alone."""
    slot_keys = ("ports", "upstream_file", "proxy", "proxy_reload", "proxy_check", "weight")
    if strategy.kind != "blue_green":
        for name in slot_keys:
            if getattr(strategy, name) is not None:
                raise ConfigError(
                    f"{name} is for blue_green, not {strategy.kind!r}",
                    file=file,
                    key=f"{where}.{name}",
                )
        return
    ports = strategy.ports or []
    if len(ports) != 2 or ports[0] == ports[1]:
        raise ConfigError(
            "blue_green needs two different ports, one per slot: ports = [8001, 8002]",
            file=file,
            key=f"{where}.ports",
        )
    if not strategy.upstream_file:
        raise ConfigError(
            "blue_green needs the upstream file it rewrites (included in your nginx upstream {})",
            file=file,
            key=f"{where}.upstream_file",
        )
    if not strategy.upstream_file.startswith("/") or "\n" in strategy.upstream_file:
        raise ConfigError(
            "must be an absolute path on the hosts", file=file, key=f"{where}.upstream_file"
        )
    try:
        # one file per host: what nginx includes does not change with the slot or the release
        placeholders.validate(
            strategy.upstream_file, f"{where}.upstream_file", allowed=UPSTREAM_PLACEHOLDERS
        )
    except ConfigError as exc:
        raise ConfigError(exc.message, file=file, key=f"{where}.upstream_file") from None
    for name in ("proxy_reload", "proxy_check"):
        value = getattr(strategy, name)
        if value is not None:
            try:
                placeholders.validate(value, f"{where}.{name}")
            except ConfigError as exc:
                raise ConfigError(exc.message, file=file, key=f"{where}.{name}") from None


def resolve_metrics_file(
    value: str, project_dir: Path, file: str, key_of: Callable[[str], str]
) -> str:
    """``metrics_file`` as an absolute path (a relative one is relative to the project dir,
    ``~`` is the home directory). Whether its directory exists is asked when a run writes it:
    config is read on machines that never deploy (a warning then, never a failed deploy)."""
    if "\x00" in value or "\n" in value or value.endswith("/"):
        raise ConfigError(
            "must name a file (no newline or NUL, not ending in /)",
            file=file,
            key=key_of("metrics_file"),
        )
    return str(project_path(project_dir, value))


def is_http_url(value: str) -> bool:
    """An http(s) URL with a host, and no query or fragment (a base URL paths are added to)."""
    if not WEBHOOK_RE.fullmatch(value):
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return bool(parts.hostname) and not parts.query and not parts.fragment and "#" not in value
