"""The schema of deploy.toml: one strict pydantic model per table.

Unknown keys are errors (``extra="forbid"``). Types are strict: a TOML value of the wrong type
(``keep_releases = "5"``) is an error, never converted; only an integer is taken where a number
with a fraction is expected. Patterns match whole strings: a trailing newline is never accepted.
How a validation error is worded is ``loading``'s.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deploylib.pipeline_name import PIPELINE_PATTERN

# pydantic checks ``pattern=`` with Rust's regex engine, whose ``$`` is the end of the text only
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
#: an environment's name: printed and typed on command lines, so no blanks or control characters
ENV_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"

# Seconds. Every timeout, interval and wait is a finite number (TOML's ``inf`` and ``nan`` are
# refused: ``allow_inf_nan=False``) with an upper bound, so that no setting makes a deadline that
# never comes (``inf`` waits forever; ``1e300`` overflows the clocks and timers it reaches).
#: the longest command, step, canary bake, swarm update or swarm delay: a day
MAX_LONG_SECONDS = 86400
#: the longest connect, channel open, keepalive interval, pause, wait or drain: an hour
MAX_SHORT_SECONDS = 3600
#: seconds, more than 0, at most an hour
ShortTimeout = Annotated[float, Field(gt=0, le=MAX_SHORT_SECONDS, allow_inf_nan=False)]
#: seconds, more than 0, at most a day
LongTimeout = Annotated[float, Field(gt=0, le=MAX_LONG_SECONDS, allow_inf_nan=False)]


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
    #: seconds for TCP connect, banner, key exchange and authentication (at most an hour)
    connect_timeout: ShortTimeout = 10.0
    #: seconds to open a channel (at most an hour)
    channel_timeout: ShortTimeout = 10.0
    #: seconds between keepalives that expect a reply (at most an hour)
    alive_interval: ShortTimeout = 5.0
    #: keepalives without a reply before the link counts as dead (at most 100)
    alive_count_max: Annotated[int, Field(ge=1, le=100)] = 3
    parallel: Annotated[int, Field(ge=1, le=1000)] = 64


HostCount = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")]


class StrategySettings(_Model):
    kind: Literal["all", "rolling", "canary", "blue_green"] = "all"
    batch: HostCount | None = None  # hosts per batch: a number or "25%"
    canary: HostCount | None = None  # hosts in the canary batch
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = None
    proxy: Literal["nginx"] | None = None
    upstream_file: str | None = None
    proxy_reload: str | None = None
    #: blue_green: the command that checks the proxy's configuration before the reload
    proxy_check: str | None = None
    #: blue_green: percent of requests the new slot takes while it bakes (a weighted canary)
    weight: Annotated[int, Field(ge=1, le=99)] | None = None
    #: blue_green: seconds for in-flight requests after the proxy switch (at most an hour);
    #: rolling, canary: a command that takes a host out of an external load balancer before its
    #: batch switches
    drain: (
        Annotated[float, Field(ge=0, le=MAX_SHORT_SECONDS, allow_inf_nan=False)]
        | Annotated[str, Field(min_length=1)]
    ) = 10.0
    #: rolling, canary: the command that puts a host back once its batch passed its checks
    undrain: Annotated[str, Field(min_length=1)] | None = None
    #: where drain and undrain run: on this machine (a load balancer's API) or on the host
    drain_on: Literal["controller", "host"] = "controller"
    #: rolling: hosts (N or "N%") that may fail their switch or checks and be put back while
    #: the deploy goes on; one more and every switched host is put back
    max_fail: (
        Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")]
    ) = 0
    #: rolling, canary: seconds between batches (at most an hour)
    pause: Annotated[float, Field(ge=0, le=MAX_SHORT_SECONDS, allow_inf_nan=False)] = 0.0
    #: canary: seconds the canaries' checks repeat, every ``wait``, before the rest switch (at
    #: most a day; ``wait`` at most an hour)
    bake: Annotated[float, Field(ge=0, le=MAX_LONG_SECONDS, allow_inf_nan=False)] = 0.0
    wait: ShortTimeout = 5.0


#: seconds, 0 to a day
Seconds = Annotated[float, Field(ge=0, le=MAX_LONG_SECONDS, allow_inf_nan=False)]
ServiceName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length=63)]


class SwarmSettings(_Model):
    """``[swarm]``: the Docker Swarm service an environment with ``orchestrator = "swarm"``
    deploys, and how swarm rolls each release out (docs/containers.md)."""

    #: the service's name (default: the app's)
    service: ServiceName | None = None
    #: ``replicated`` (``replicas`` tasks) or ``global`` (one task on every node)
    mode: Literal["replicated", "global"] = "replicated"
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    #: tasks updated at once
    parallelism: Annotated[int, Field(ge=1, le=1000)] = 1
    #: seconds between updating one group of tasks and the next
    delay: Seconds = 0.0
    #: start the new task before the old one stops (no gap), or stop it first
    order: Literal["start-first", "stop-first"] = "start-first"
    #: what swarm does when a new task fails: go back to the previous spec, or stop updating
    failure_action: Literal["rollback", "pause"] = "rollback"
    #: seconds each new task is watched for a failure after it started (at most an hour)
    monitor: ShortTimeout = 5.0
    #: the share of tasks that may fail during an update before it counts as failed
    max_failure_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    #: seconds a stopping task has before it is killed
    stop_grace_period: Seconds = 10.0
    #: seconds deploylib follows an update (or a rollback) before it counts as failed; less
    #: than ``command_timeout`` and ``step_timeout`` (default: ``command_timeout`` less 10 s;
    #: at most a day)
    timeout: Annotated[float, Field(ge=1, le=MAX_LONG_SECONDS, allow_inf_nan=False)] | None = None


class NotifySettings(_Model):
    webhook: str | None = None


Port = Annotated[int, Field(ge=1, le=65535)]
_PLAIN_NETWORK_RE = re.compile(r"[0-9a-f.:]+/[0-9]{1,3}")


class FirewallRule(_Model):
    """One allowed port, as a table: ``{ port = 8000, from = "10.0.0.0/8", proto = "tcp" }``."""

    port: Port
    source: Annotated[str | None, Field(alias="from")] = None
    proto: Literal["tcp", "udp"] = "tcp"

    @field_validator("source")
    @classmethod
    def _address_or_network(cls, value: str | None) -> str | None:
        """An IPv4/IPv6 address or CIDR network, written back in its plain form.

        An IPv6 zone id (``fe80::1%eth0``) is refused: ``ipaddress`` keeps whatever follows the
        ``%`` (a newline too), and the text would reach the firewall's ruleset."""
        if value is None:
            return None
        if "%" in value:
            raise ValueError(
                "must be an IPv4 or IPv6 address or network (CIDR) without a zone id (%...)"
            )
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"must be an IPv4 or IPv6 address or network (CIDR): {exc}") from None
        plain = str(network)
        # what the ruleset gets is digits, dots, colons and one slash, and reads back the same
        if not _PLAIN_NETWORK_RE.fullmatch(plain) or ipaddress.ip_network(plain) != network:
            raise ValueError("must be an IPv4 or IPv6 address or network (CIDR) in plain form")
        return plain


class FirewallSettings(_Model):
    """``[firewall]``: deploylib's own nftables table (or ufw rules), applied by ``setup``."""

    policy: Literal["accept", "drop"] = "accept"
    allow: list[Port | FirewallRule] = []
    tool: Literal["nftables", "ufw"] = "nftables"


RelPath = Annotated[str, Field(min_length=1)]


class _Overridable(_Model):
    """Settings allowed both at the top level and inside an environment."""

    deploy_to: Annotated[str, Field(min_length=1)] | None = None
    keep_releases: Annotated[int, Field(ge=1)] | None = None
    pipeline: Annotated[str, Field(pattern=PIPELINE_PATTERN)] | None = None
    shared_dirs: list[RelPath] | None = None
    shared_files: list[RelPath] | None = None
    #: a file for node_exporter's textfile collector (relative: to the project dir)
    metrics_file: Annotated[str, Field(min_length=1)] | None = None
    #: the base URL of a Prometheus Pushgateway the metrics are pushed to
    pushgateway: Annotated[str, Field(min_length=1)] | None = None
    public_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = None
    #: seconds each command and upload may take (at most a day)
    command_timeout: LongTimeout | None = None
    #: seconds all of one step's operations on one host may take (at most a day)
    step_timeout: LongTimeout | None = None
    #: where each deploy's, rollback's and dry run's log is written on this machine (relative:
    #: to the project dir; default .deploylib/logs); "" writes none
    log_dir: str | None = None
    #: how many of those logs are kept (the oldest go)
    keep_logs: Annotated[int, Field(ge=1, le=10000)] | None = None
    env_file: str | None = None
    #: the registry container images are pushed to and pulled from: ``host[:port][/path]``
    registry: (
        Annotated[
            str,
            Field(
                pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?"
                r"(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
            ),
        ]
        | None
    ) = None
    #: the user commands with ``sudo=True`` run as, through ``sudo -n -u`` (default: root)
    become: Annotated[str, Field(pattern=USER_PATTERN)] | None = None
    #: Debian packages ``setup`` installs where missing (through ``sudo -n apt-get``)
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] | None = None
    ssh: SSHSettings | None = None
    strategy: StrategySettings | None = None
    notify: NotifySettings | None = None
    firewall: FirewallSettings | None = None
    #: who runs the release's containers: deploylib's slots (none) or a Docker Swarm service
    orchestrator: Literal["swarm"] | None = None
    swarm: SwarmSettings | None = None


class EnvironmentModel(_Overridable):
    hosts: Annotated[list[str | HostEntry], Field(min_length=1)]
    confirm: bool = False


class ProjectModel(_Overridable):
    app: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    environments: Annotated[
        dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN, max_length=64)], EnvironmentModel],
        Field(min_length=1),
    ]
