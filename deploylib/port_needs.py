"""The ports a pipeline needs open on its hosts: those its checks (``http``, ``tcp``, and a
``prometheus`` check of a server on the host itself) connect to from this machine. ``check``
compares them with the firewall settings (a ``drop`` policy that does not allow one would fail
every verify) and, with ``--ports``, tries each one."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from deploylib.commands import Probe
from deploylib.config import Environment
from deploylib.context import StepContext
from deploylib.firewall import allowed
from deploylib.hosts import Host
from deploylib.pipeline import Pipeline

#: a release id for filling the checks' templates: only their addresses are read
_ANY_RELEASE = "20000101T000000Z"


@dataclass(frozen=True)
class NeededPort:
    host: str
    address: str
    port: int
    #: the check that connects to it, as ``check`` prints it
    check: str


def needed_ports(pipeline: Pipeline, env: Environment, hosts: Sequence[Host]) -> list[NeededPort]:
    """Per SSH host, the TCP ports of the checks that connect to that host itself (a check of
    a load balancer or another address is not the host's)."""
    found: list[NeededPort] = []
    for host in hosts:
        if host.is_local:
            continue
        ctx = StepContext(env=env, host=host, release=_ANY_RELEASE, revision="", artifact="")
        for step in pipeline.flat():
            if step.retry is None:
                continue
            for op in step.operations(ctx):
                if not isinstance(op, Probe):
                    continue
                address, port = _target(op)
                needed = NeededPort(host.name, address, port, op.line)
                if address == host.address and port and needed not in found:
                    found.append(needed)
    return found


def _target(probe: Probe) -> tuple[str, int]:
    if probe.kind == "tcp":
        return probe.host, probe.port
    parts = urlsplit(probe.url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return parts.hostname or "", 0
    return parts.hostname or "", port


def firewall_warnings(env: Environment, needed: Sequence[NeededPort]) -> list[str]:
    """Where the environment's firewall (``policy = "drop"``) would drop a checked port, or let
    it in only from some networks."""
    settings = env.firewall
    if settings is None or settings.policy != "drop":
        return []
    rules = [a for a in allowed(settings) if a.proto == "tcp"]
    warnings = []
    for need in needed:
        sources = [a.source for a in rules if a.port == need.port]
        where = f"{need.host}: port {need.port} ({need.check})"
        if not sources:
            warnings.append(
                f"{where} is checked from this machine, but the firewall drops it: add "
                f"{need.port} to firewall.allow"
            )
        elif None not in sources:
            networks = ", ".join(str(s) for s in sources)
            warnings.append(
                f"{where} is let in by the firewall only from {networks}: this machine, which "
                "runs the checks, must be in it"
            )
    return warnings


def reach(needed: Sequence[NeededPort], timeout: float = 2.0) -> list[tuple[NeededPort, str]]:
    """A TCP connect from this machine to each port: ``open``, ``refused`` (reached, nothing
    listening) or ``no answer`` (dropped on the way: a firewall, or the host is down)."""

    def one(need: NeededPort) -> tuple[NeededPort, str]:
        try:
            with socket.create_connection((need.address, need.port), timeout=timeout):
                return need, "open"
        except ConnectionRefusedError:
            return need, "refused"
        except OSError:
            return need, "no answer"

    if not needed:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(needed))) as pool:
        return list(pool.map(one, needed))
