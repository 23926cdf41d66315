"""A Docker Swarm service: ``service(...)`` is the switch of an environment with
``orchestrator = "swarm"`` (docs/containers.md, "Swarm services").

The service is the environment's ``[swarm]``: its name, replicas, and how swarm rolls each
release out (parallelism, delay, ``start-first``, failure action ``rollback``, monitor). The
pipeline gives what belongs to the app: more ``docker service create`` options (``args``: a
network, published ports, mounts, constraints), the containers' command, and a health check
run inside each container; without one the image's own ``HEALTHCHECK`` is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.errors import ConfigError
from deploylib.remote.swarm import HealthCheck
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, as_steps
from deploylib.steps.service import ServiceOptions, ServiceSwitch


def _words(words: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(words, str) or not all(isinstance(w, str) and "\0" not in w for w in words):
        raise ConfigError(f"service({what}=...): a list of argv words, e.g. ['--network', 'host']")
    return tuple(words)


def _seconds(value: float, what: str, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (positive and value == 0) or value > 86400:
        raise ConfigError(f"service({what}=...): seconds, {'over' if positive else 'from'} 0")
    return float(value)


def service(
    *,
    args: Sequence[str] = (),
    command: Sequence[str] = (),
    health: str | None = None,
    health_interval: float = 2.0,
    health_timeout: float = 5.0,
    health_retries: int = 3,
    health_start_period: float = 0.0,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The switch that runs each release's image as the environment's swarm service.

    ``args``: more ``docker service create`` options, as argv words (``["--network",
    "host"]``, ``["--publish", "published=80,target=8000"]``), given when the service is made;
    ``command``: the containers' command, as argv words (default: the image's). ``health``: a
    shell command run inside each container (``CMD-SHELL``; ``$PORT`` is the task's port on
    blue-green slots) that swarm waits on before a new task counts as running, every
    ``health_interval`` seconds, ``health_retries`` failures in a row making it unhealthy."""
    if health is not None and (not isinstance(health, str) or not health.strip() or "\0" in health):
        raise ConfigError("service(health=...): a shell command, run inside each container")
    if isinstance(health_retries, bool) or not isinstance(health_retries, int):
        raise ConfigError("service(health_retries=...): a whole number, 1 or more")
    if health_retries < 1:
        raise ConfigError("service(health_retries=...): a whole number, 1 or more")
    check = (
        HealthCheck(
            health,
            interval=_seconds(health_interval, "health_interval", positive=True),
            timeout=_seconds(health_timeout, "health_timeout", positive=True),
            retries=health_retries,
            start_period=_seconds(health_start_period, "health_start_period"),
        )
        if health is not None
        else None
    )
    options = ServiceOptions(
        args=_words(args, "args"), command=_words(command, "command"), health=check
    )
    return ServiceSwitch(
        name="switch", options=options, before=as_steps(before), after=as_steps(after)
    )
