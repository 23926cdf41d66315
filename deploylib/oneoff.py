"""``exec`` and ``logs`` as plain functions: a one-off command in ``current`` on the chosen
hosts, and the tail of their logs, each host's output streamed as it arrives
(``deploylib.streaming``). Neither takes the deploy lock (as Kamal's ``app exec``): they change
nothing deploylib manages, and a shell on a host must work while a deploy runs or hangs.

Everything is validated before any host is contacted: a bad usage raises ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.commands import Command
from deploylib.config import Environment
from deploylib.errors import ConfigError
from deploylib.fleet import Target
from deploylib.hosts import Host
from deploylib.remote import oneoff
from deploylib.remote.layout import Layout
from deploylib.reporting import SilentReporter
from deploylib.streaming import HostLines, Streamed, run_streamed
from deploylib.wiring import backend_factory

__all__ = ["exec_on", "logs_of", "timeout_of"]


def timeout_of(env: Environment, timeout: str | float | None) -> float:
    """``--timeout S``, or the environment's ``command_timeout``."""
    if timeout is None:
        return env.command_timeout
    try:
        seconds = float(timeout)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {timeout!r}", key="--timeout") from None
    if not 0 < seconds <= oneoff.UNBOUNDED:
        raise ConfigError(f"must be more than 0 seconds: {timeout!r}", key="--timeout")
    return seconds


def exec_on(
    env: Environment,
    hosts: Sequence[Host],
    script: str,
    lines: HostLines,
    *,
    once: bool = False,
    timeout: float | None = None,
) -> Streamed:
    """``script`` in ``current`` on ``hosts`` (``once``: the first only), all at once (up to
    ``ssh.parallel``), with the env-file variables in its environment."""
    chosen = list(hosts[:1] if once else hosts)
    command = oneoff.exec_command(
        Layout(env.deploy_to), script, env.variables, timeout or env.command_timeout
    )
    return _stream(env, chosen, command, lines, env.ssh.parallel)


def logs_of(
    env: Environment,
    hosts: Sequence[Host],
    paths: Sequence[str],
    lines: HostLines,
    *,
    count: int = oneoff.DEFAULT_LINES,
    follow: bool = False,
) -> Streamed:
    """The last ``count`` lines of ``paths`` (relative ones relative to ``shared``), or of
    every ``shared/log/*.log``, on every host; ``follow`` keeps reading, on every host at
    once, until Ctrl-C."""
    if count < 0:
        raise ConfigError(f"must be 0 or more: {count}", key="--lines")
    layout = Layout(env.deploy_to)
    command = oneoff.logs_command(
        layout, oneoff.log_paths(layout, paths), lines=count, follow=follow
    )
    # following never ends: every host needs its own worker, whatever ssh.parallel says
    parallel = max(len(hosts), 1) if follow else env.ssh.parallel
    return _stream(env, list(hosts), command, lines, parallel)


def _stream(
    env: Environment,
    hosts: Sequence[Host],
    command: Command,
    lines: HostLines,
    parallel: int,
) -> Streamed:
    make = backend_factory(env, dry_run=False, reporter=SilentReporter())
    targets = [Target(host, make(host)) for host in hosts]
    try:
        return run_streamed(targets, command, lines, parallel)
    finally:
        for target in targets:
            target.backend.close()
