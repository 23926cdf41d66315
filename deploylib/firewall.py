"""The firewall part of ``setup``: deploylib's own nftables table, made from ``[firewall]``.

* ``rules`` / ``ruleset``: what one host's table should be (pure);
* ``refuse_cutting_ssh`` / ``check_ssh``: a ``drop`` policy that would not let deploylib's SSH
  port in is a ``ConfigError`` (exit 2), found before any host is contacted;
* ``current_rules`` / ``diff``: what a host's table holds, read from ``nft list table``;
* ``apply``: the one entry point ``setup`` calls per host.

Every rule carries a comment that names it (``deploylib: allow tcp 8000 from 10.0.0.0/8``): the
comments are how a listed table is compared with the wanted one, since ``nft`` prints rules in
its own words (``priority filter``, ``iif "lo"``). Two tables are the same when their policy and
their comments, in order, are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib.commands import Command
from deploylib.config.schema import FirewallRule, FirewallSettings
from deploylib.errors import ConfigError, StepFailed
from deploylib.hosts import Host
from deploylib.remote import firewall as remote

if TYPE_CHECKING:
    from deploylib.backends.base import Backend
    from deploylib.config.environment import Environment

__all__ = [
    "FirewallOutcome",
    "Rule",
    "apply",
    "check_ssh",
    "current_rules",
    "diff",
    "refuse_cutting_ssh",
    "rules",
    "ruleset",
]

COMMENT_PREFIX = "deploylib: "


@dataclass(frozen=True)
class Rule:
    """One rule of deploylib's input chain: its nft text (without the comment) and its name."""

    text: str
    name: str

    @property
    def line(self) -> str:
        return f'{self.text} comment "{COMMENT_PREFIX}{self.name}"'


#: the rules every table starts with: answers to our own traffic, loopback, ping and IPv6
#: neighbour discovery (a drop policy must not break them)
BASE_RULES = (
    Rule("ct state established,related accept", "established"),
    Rule('iif "lo" accept', "loopback"),
    Rule("meta l4proto icmp accept", "icmp"),
    Rule("meta l4proto ipv6-icmp accept", "icmpv6"),
)


@dataclass(frozen=True)
class Allowed:
    port: int
    proto: str = "tcp"
    source: str | None = None

    @property
    def rule(self) -> Rule:
        name = f"allow {self.proto} {self.port}" + (f" from {self.source}" if self.source else "")
        match = f"{self.proto} dport {self.port} accept"
        if self.source:
            family = "ip6" if ":" in self.source else "ip"
            match = f"{family} saddr {self.source} {match}"
        return Rule(match, name)


def allowed(settings: FirewallSettings) -> list[Allowed]:
    """The ``allow`` entries as values, in their order, each once."""
    found: list[Allowed] = []
    for entry in settings.allow:
        item = (
            Allowed(entry.port, entry.proto, entry.source)
            if isinstance(entry, FirewallRule)
            else Allowed(entry)
        )
        if item not in found:
            found.append(item)
    return found


def rules(settings: FirewallSettings) -> list[Rule]:
    """The input chain's rules, in order: the base rules, then one per allowed port."""
    return [*BASE_RULES, *(item.rule for item in allowed(settings))]


def ruleset(settings: FirewallSettings) -> str:
    """The text of deploylib's table for ``settings`` (what ``nft -f`` reads)."""
    body = "\n".join(f"\t\t{rule.line}" for rule in rules(settings))
    return (
        f"table {remote.TABLE} {{\n"
        "\tchain input {\n"
        f"\t\ttype filter hook input priority 0; policy {settings.policy};\n"
        f"{body}\n"
        "\t}\n"
        "}\n"
    )


def ssh_port(host: Host, default: int) -> int:
    """The port deploylib reaches ``host`` on: its own, else the environment's ``ssh.port``."""
    return host.port if host.port is not None else default


def refuse_cutting_ssh(
    settings: FirewallSettings,
    hosts: Iterable[Host],
    default_port: int,
    *,
    file: str | None = None,
    key: str = "firewall",
) -> None:
    """A ``ConfigError`` when ``policy = "drop"`` would not let in, from anywhere, the SSH port
    deploylib reaches one of ``hosts`` on. ``local`` is reached without SSH."""
    if settings.policy != "drop":
        return
    open_ports = {a.port for a in allowed(settings) if a.proto == "tcp" and a.source is None}
    for host in hosts:
        if host.is_local:
            continue
        port = ssh_port(host, default_port)
        if port not in open_ports:
            only_from = [
                a.source for a in allowed(settings) if a.port == port and a.source is not None
            ]
            how = f"only from {', '.join(only_from)}" if only_from else "not in allow"
            raise ConfigError(
                f'policy "drop" would cut deploylib\'s SSH connection to {host.name}: '
                f"port {port} is {how}; add {port} to {key}.allow",
                file=file,
                key=f"{key}.allow",
            )


def check_ssh(env: Environment, hosts: Sequence[Host] | None = None) -> None:
    """Refuse (``ConfigError``, exit 2) a firewall that would cut SSH to any of ``hosts``
    (default: the environment's). Contacts nothing; call it before any host is touched.
    ``load_environment`` already did it for all the environment's hosts."""
    if env.firewall is None:
        return
    refuse_cutting_ssh(
        env.firewall,
        env.hosts if hosts is None else hosts,
        env.ssh.port,
        file=str(env.config_file),
        key=env.firewall_key,
    )


@dataclass(frozen=True)
class Listed:
    """deploylib's table as a host holds it: absent, or its policy and its rules."""

    present: bool
    policy: str = ""
    rules: tuple[Rule, ...] = ()

    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.policy, tuple(rule.name for rule in self.rules)


def current_rules(listing: str) -> Listed:
    """Parse ``nft list table inet deploylib`` (empty text: the table is absent). A rule
    without a deploylib comment (added by hand) is kept under its own text, so it shows as
    one to remove."""
    if not listing.strip():
        return Listed(present=False)
    policy = ""
    found: list[Rule] = []
    for raw in listing.splitlines():
        line = raw.strip()
        if not line or line.startswith(("table ", "chain ", "}")):
            continue
        if line.startswith("type "):
            if "policy " in line:
                policy = line.split("policy ", 1)[1].rstrip(";").strip()
            continue
        text, marker, comment = line.partition(' comment "')
        if marker and comment.startswith(COMMENT_PREFIX):
            found.append(Rule(text, comment.removeprefix(COMMENT_PREFIX).rstrip('"')))
        else:
            found.append(Rule(line, f"? {line}"))
    return Listed(present=True, policy=policy, rules=tuple(found))


def diff(current: Listed, settings: FirewallSettings) -> list[str]:
    """What applying ``settings`` changes: ``- rule`` / ``+ rule`` lines, the policy's first;
    empty when nothing would."""
    wanted = rules(settings)
    if current.present and current.key() == (settings.policy, tuple(r.name for r in wanted)):
        return []
    lines: list[str] = []
    if current.policy != settings.policy:
        if current.present:
            lines.append(f"- policy {current.policy}")
        lines.append(f"+ policy {settings.policy}")
    have = {rule.name for rule in current.rules}
    want = {rule.name for rule in wanted}
    lines += [f"- {rule.text}" for rule in current.rules if rule.name not in want]
    lines += [f"+ {rule.text}" for rule in wanted if rule.name not in have]
    if not lines:  # the same rules in another order
        lines = [f"~ {rule.text}" for rule in wanted]
    return lines


@dataclass(frozen=True)
class FirewallOutcome:
    """What ``apply`` did (or, in a dry run, would do) on one host."""

    #: the host's rules differ from the wanted ones (and, unless a dry run, were replaced)
    changed: bool
    #: ``+ tcp dport 8000 accept`` / ``- ...`` lines: what changes (empty: nothing)
    diff: list[str]
    #: the wanted table, as sent to ``nft -f`` (for ufw: the commands)
    ruleset: str
    #: ``False`` in a dry run: nothing was sent
    applied: bool = False


def apply(backend: Backend, env: Environment, host: Host, *, dry_run: bool) -> FirewallOutcome:
    """Make ``host``'s firewall what ``env.firewall`` says, through ``backend`` (that host's).

    nftables: reads deploylib's table (one command), compares it with the wanted one and, when
    they differ and not ``dry_run``, replaces it in one ``nft -f -`` transaction; only table
    ``inet deploylib`` is ever read or changed. Unchanged: nothing is sent, ``changed`` is
    ``False``. ``dry_run`` reads but changes nothing (the backend must still read: pass a real
    one, not the printer). ufw: nothing is read; the rules are always replaced (``changed``
    is ``True``), or only returned with ``dry_run``.

    Without ``env.firewall``: nothing is done (``changed`` False, empty ruleset).
    Raises ``ConfigError`` (exit 2) before anything is sent when the firewall would cut SSH to
    ``host``, and ``StepFailed`` (step ``firewall``) when a command fails on the host — a
    missing ``nft`` says to run ``apt-get install nftables``; a failed apply leaves the old
    rules in place.
    """
    settings = env.firewall
    if settings is None:
        return FirewallOutcome(changed=False, diff=[], ruleset="")
    check_ssh(env, [host])
    if settings.tool == "ufw":
        items = [(a.port, a.proto, a.source) for a in allowed(settings)]
        commands = remote.ufw_commands(items, drop=settings.policy == "drop")
        text = "\n".join(command.script for command in commands) + "\n"
        lines = [f"+ {remote.ufw_rule(*item)}" for item in items]
        if not dry_run:
            for command in commands:
                _run(backend, host, command)
        return FirewallOutcome(changed=True, diff=lines, ruleset=text, applied=not dry_run)
    wanted = ruleset(settings)
    listing = _run(backend, host, remote.read_command())
    changes = diff(current_rules(listing), settings)
    if not changes or dry_run:
        return FirewallOutcome(changed=bool(changes), diff=changes, ruleset=wanted)
    _run(backend, host, remote.apply_command(wanted))
    return FirewallOutcome(changed=True, diff=changes, ruleset=wanted, applied=True)


def _run(backend: Backend, host: Host, command: Command) -> str:
    result = backend.execute(command)
    if result.ok:
        return result.stdout
    if result.exit_code == remote.NFT_MISSING and not (result.unreachable or result.timed_out):
        message = remote.MISSING_MESSAGES.get(command.description, "command not found")
    elif result.unreachable:
        message = f"unreachable: {result.summary()}"
    elif result.timed_out:
        message = f"timed out: {result.summary()}"
    else:
        message = f"{command.description} exited {result.exit_code}: {result.summary()}"
    raise StepFailed("firewall", host.name, message, result)
