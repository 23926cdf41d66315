"""``setup``: make hosts deploy-ready, idempotently. Every host is checked for what the
pipeline needs (deploylib's tools and GNU flags, Python with its venv module when a step
needs one, free space, a clock in step with this machine's), gets the environment's Debian
``packages`` it lacks, the directories of the layout (``releases/``, ``shared/``, shared
dirs, empty shared files) and, with ``[firewall]``, its rules (``firewall``). It runs under
the deploy lock and is recorded in each host's release log; a second run changes nothing and
says so.

With ``dry_run`` hosts are read, never changed, and nothing is locked: what would be made or
installed is reported."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from deploylib import firewall, fleet
from deploylib.commands import Command
from deploylib.config import Environment
from deploylib.fleet import Target
from deploylib.remote import provision
from deploylib.remote.layout import Layout
from deploylib.reporting import Reporter, SilentReporter
from deploylib.steps import PythonEnv
from deploylib.wiring import Loaded, backend_factory, runner_for

#: a host clock further off than this from the controller's is worth a warning
CLOCK_SKEW = 5.0
#: free space below this is worth a warning
LOW_SPACE_MB = 200

__all__ = ["CLOCK_SKEW", "HostSetup", "setup"]


@dataclass
class HostSetup:
    """What setup found and did on one host."""

    host: str
    #: (what, fix) for each prerequisite the host lacks
    missing: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: directories and files made (or, in a dry run, that would be)
    made: list[str] = field(default_factory=list)
    #: packages installed (or, in a dry run, that would be)
    packages: list[str] = field(default_factory=list)
    #: the firewall's change (``+``/``-`` lines), made or, in a dry run, that would be
    firewall: list[str] = field(default_factory=list)
    #: the firewall's ruleset wanted on the host ("" without ``[firewall]``)
    ruleset: str = ""
    error: str | None = None

    @property
    def ready(self) -> bool:
        return not self.missing and self.error is None

    @property
    def changed(self) -> bool:
        return bool(self.made or self.packages or self.firewall)


def setup(loaded: Loaded, *, reporter: Reporter, dry_run: bool = False) -> list[HostSetup]:
    """Set up every chosen host (see the module's docstring); a row per host, in order."""
    env = loaded.env
    python = next(
        (s.settings.install.python for s in loaded.pipeline.flat() if isinstance(s, PythonEnv)),
        None,
    )
    rows = {host.name: HostSetup(host.name) for host in loaded.hosts}

    def work(target: Target) -> None:
        _set_up(env, target, rows[target.name], python=python, dry_run=dry_run)

    if dry_run:
        make = backend_factory(env, dry_run=False, reporter=SilentReporter())
        targets = [Target(host, make(host)) for host in loaded.hosts]
        try:
            errors = {n: str(e) for n, e in fleet.run_parallel(work, targets, 4).items()}
        finally:
            for target in targets:
                target.backend.close()
    else:
        errors = runner_for(loaded, reporter=reporter).setup(loaded.hosts, work)
    for name, error in errors.items():
        rows[name].error = error
    return [rows[host.name] for host in loaded.hosts]


def _set_up(
    env: Environment, target: Target, row: HostSetup, *, python: str | None, dry_run: bool
) -> None:
    layout = Layout(env.deploy_to)

    def output(command: Command) -> list[str]:
        result = target.backend.execute(command)
        if not result.ok:
            summary = result.summary(500, redact=env.redactor.redact)
            raise SetupFailed(f"{command.description}: {summary}")
        return result.stdout.splitlines()

    def facts(command: Command) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output(command) if "=" in line)

    before = time.time()
    found = facts(provision.facts_command(layout, python=python))
    # the host's clock read between these two: compare with their middle
    _judge(found, row, python=python, asked=(before + time.time()) / 2)
    if env.packages:
        packages = facts(provision.packages_command(env.packages, dry=dry_run))
        row.packages = (packages.get("missing" if dry_run else "installed") or "").split()
    made = output(
        provision.directories_command(
            layout, env.shared_dirs, env.shared_files, dry=dry_run, token=target.token or None
        )
    )
    row.made = [line.split("=", 1)[1] for line in made if "=" in line]
    if env.firewall is not None and target.host.is_local:
        row.warnings.append(
            '[firewall] is not applied to this machine (host "local"): setup changes the '
            "firewall of SSH hosts only"
        )
        return
    walls = firewall.apply(target.backend, env, target.host, dry_run=dry_run)
    row.firewall = list(walls.diff) if walls.changed else []
    row.ruleset = walls.ruleset


class SetupFailed(Exception):
    """A setup command failed on a host: which, and its output (secrets masked)."""


def _judge(facts: dict[str, str], row: HostSetup, *, python: str | None, asked: float) -> None:
    for tool, package in provision.TOOLS.items():
        if facts.get(f"tool.{tool}") != "ok":
            row.missing.append((tool, f"apt-get install {package}"))
    for flag in provision.FLAGS:
        if facts.get("flag." + flag.replace(" ", "")) != "ok":
            row.missing.append(
                (flag, "deploylib's commands need GNU coreutils (apt-get install coreutils)")
            )
    if python:
        state = facts.get("python")
        if state == "missing":
            row.missing.append((python, f"install {python} (apt-get install python3-venv)"))
        elif state == "novenv":
            row.missing.append((f"{python} -m venv", "apt-get install python3-venv, or install uv"))
    if facts.get("writable") != "yes":
        row.missing.append(("a writable deploy_to", "create it or give the deploy user its parent"))
    free_kb = facts.get("free_kb", "")
    if free_kb.isdigit() and int(free_kb) // 1024 < LOW_SPACE_MB:
        row.warnings.append(f"only {int(free_kb) // 1024} MB free where deploy_to is")
    now = facts.get("now", "")
    if now.isdigit():
        skew = int(now) - asked
        if abs(skew) > CLOCK_SKEW:
            row.warnings.append(
                f"its clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} this "
                "machine's: release ids and the lock's heartbeat compare times (run chrony or "
                "systemd-timesyncd)"
            )
