"""The Invoke collection: ``from deploylib.tasks import ns`` in a tasks.py, or the ``deploylib``
program, which serves the same collection without one.

Tasks are thin: they call ``deploylib.actions`` (deploy, rollback) and ``deploylib.inspection``
(status, releases, check, unlock), show and ask through ``deploylib.terminal``, and map
``DeployError``s to exit codes here, in one place. Every option's help is in one table,
``OPTION_HELP``. Heavy imports happen inside the tasks, so ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import task

from deploylib.collector import freeze_leftovers, quiet_collector
from deploylib.terminal import ask, confirm, console, escape, lines, reporter_for, say_log

if TYPE_CHECKING:
    from deploylib.config import Environment
    from deploylib.streaming import HostLines, Streamed

#: the help of every task option, by option; each task shows the entries of its own options
OPTION_HELP = {
    "env": "environment from deploy.toml, e.g. dev or prod",
    "pipeline": "pipeline name: pipelines/NAME.py (default: deploy.toml's pipeline)",
    "hosts": "only these hosts, comma-separated",
    "roles": "only hosts with these roles, comma-separated",
    "revision": "commit to deploy in a git work tree, recorded by its full id (default: HEAD); "
    "elsewhere a label to record",
    "allow-dirty": "deploy even though the build packs a working tree with uncommitted changes "
    "(recorded as <commit>-dirty)",
    "dry-run": "print the exact commands per host; change nothing",
    "to": "put every host on this release id (default: undo the last deploy, each host back "
    "to what it ran before it)",
    "no-verify": "do not run the checks on the release gone back to",
    "yes": "skip the confirmation of environments with confirm = true; rollback: go back also "
    "to a release that does not know every migration of the live database",
    "force": "remove the lock even if its deploy looks alive (asks first)",
    "events": "append JSON Lines events to FILE",
    "json": "print JSON instead of a table",
    "lock-wait": "wait up to S seconds for a deploy lock another deploy holds (saying who), "
    "instead of exiting 3 at once",
    "ci": "also write a CI workflow: github",
    "config": "path of deploy.toml (default: ./deploy.toml)",
    "verbose": "show every command as it runs",
    "once": "run on the first chosen host only",
    "timeout": "stop the command after S seconds (default: the environment's command_timeout)",
    "command": "the command to run, as one shell script (the same as CMD after '--')",
    "follow": "keep showing lines as they are written, until Ctrl-C",
    "lines": "show the last N lines of each file",
    "path": "a file to show instead of shared/log/*.log, relative to shared/; repeatable "
    "(the deploylib program also takes them as words: logs --env E log/a.log log/b.log)",
}


def _task(
    *, task_name: str | None = None, iterable: tuple[str, ...] = (), **own_help: str
) -> Callable[[Callable[..., None]], Any]:
    """``@task`` with each option's help from ``OPTION_HELP``, or from ``own_help`` where this
    task means more by it; an option with no help is an error at import. ``task_name`` names a
    task whose function cannot bear its name (``exec``); ``iterable`` options repeat."""

    def wrap(body: Callable[..., None]) -> Any:
        options = [name.replace("_", "-") for name in signature(body).parameters][1:]
        texts = {
            name: own_help.get(name.replace("-", "_")) or OPTION_HELP[name] for name in options
        }
        return task(auto_shortflags=False, help=texts, name=task_name, iterable=list(iterable))(
            body
        )

    return wrap


def _run(body: Callable[[], None]) -> None:
    from deploylib.errors import DeployError

    quiet_collector()
    try:
        body()
    except DeployError as exc:
        if not exc.reported:
            lines(stderr=True).print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        lines(stderr=True).print("[red]interrupted[/]")
        raise Exit(code=130) from None
    finally:
        freeze_leftovers()


def _check_pipeline_option(pipeline: str | None) -> None:
    """``--pipeline NAME`` names a pipeline as deploy.toml's ``pipeline`` does, never a path:
    checked before deploy.toml or any pipeline file is read (``--pipeline ""`` names none)."""
    if pipeline is not None:
        from deploylib.pipeline_name import check_name

        check_name(pipeline, key="--pipeline")


@_task()
def deploy(
    c: Any,
    env: str | None = None,
    pipeline: str | None = None,
    hosts: str | None = None,
    roles: str | None = None,
    revision: str | None = None,
    dry_run: bool = False,
    allow_dirty: bool = False,
    yes: bool = False,
    events: str | None = None,
    config: str = "deploy.toml",
    verbose: bool = False,
    lock_wait: str | None = None,
) -> None:
    """Build, push, switch and verify a release; put every host back if anything fails."""

    def body() -> None:
        from deploylib import actions

        _check_pipeline_option(pipeline)
        loaded = actions.load(config, env, pipeline=pipeline, hosts=hosts, roles=roles)
        waiting = actions.lock_wait_of(lock_wait)
        # a bad --events fails before asking
        reporter = reporter_for(loaded.env, events, verbose, dry_run=dry_run)
        if not dry_run:
            confirm(loaded.env, len(loaded.hosts), yes)
        outputs = [Path(events).absolute()] if events else []
        if loaded.env.log_dir is not None:
            outputs.append(loaded.env.log_dir)  # the deploy's own log is no change to ship
        try:
            actions.deploy(
                loaded,
                reporter=reporter,
                revision=revision,
                dry_run=dry_run,
                allow_dirty=allow_dirty,
                outputs=outputs,
                lock_wait=waiting,
            )
        finally:
            say_log(reporter)

    _run(body)


@_task()
def rollback(
    c: Any,
    env: str | None = None,
    to: str | None = None,
    no_verify: bool = False,
    yes: bool = False,
    events: str | None = None,
    config: str = "deploy.toml",
    verbose: bool = False,
) -> None:
    """Undo the last deploy: each host back to what it ran before it (or all to --to RELEASE)."""

    def body() -> None:
        from deploylib import actions

        loaded = actions.load(config, env)
        # a bad --events fails before asking
        reporter = reporter_for(loaded.env, events, verbose, what="rollback")
        confirm(loaded.env, len(loaded.hosts), yes)
        try:
            actions.rollback(
                loaded, reporter=reporter, to=to, verify=not no_verify, accept_schema=yes
            )
        finally:
            say_log(reporter)

    _run(body)


@_task()
def status(c: Any, env: str | None = None, json: bool = False, config: str = "deploy.toml") -> None:
    """Per host: current release, revision, deployed at/by, lock."""
    _show(config, env, json, "status")


@_task()
def releases(
    c: Any, env: str | None = None, json: bool = False, config: str = "deploy.toml"
) -> None:
    """Release history with outcomes, from every host's release log."""
    _show(config, env, json, "releases")


def _show(config: str, env: str | None, as_json: bool, what: str) -> None:
    """``status`` and ``releases``: read every host, print a table or JSON."""

    def body() -> None:
        from deploylib import inspection, views
        from deploylib.config import load_environment
        from deploylib.errors import DeployError

        environment = load_environment(Path(config), env or "")
        if what == "status":
            rows = inspection.status_rows(environment, environment.hosts)
        else:
            rows = inspection.release_history(environment, environment.hosts)
        rows = views.redacted(rows, environment.redactor.redact)
        if what == "status":
            table = views.status_table(rows, environment.name)
        else:
            table = views.releases_table(rows, environment.name)
        out = console()
        if as_json:
            views.print_json(out, rows)
        else:
            out.print(table)
            split = inspection.split_line(rows) if what == "status" else None
            if split:
                out.print(f"[yellow]{escape(split)}[/]")
        # a status row with an error is a host that could not be read (a release row's error
        # is that release's; release_history raises when a host cannot be read)
        unreachable = [row["host"] for row in rows if what == "status" and row.get("error")]
        if unreachable:
            raise DeployError(f"could not read {', '.join(unreachable)}")

    _run(body)


@_task(
    pipeline="pipeline to validate too",
    verbose="show how each host is reached: host name, port, user, key files, jump host",
    ports="also connect from here to each port the pipeline's checks use on each host",
)
def check(
    c: Any,
    env: str | None = None,
    pipeline: str | None = None,
    json: bool = False,
    verbose: bool = False,
    ports: bool = False,
    config: str = "deploy.toml",
) -> None:
    """Validate config and pipeline, reach every host; change nothing."""

    def body() -> None:
        from deploylib import actions, inspection, port_needs, views
        from deploylib.errors import DeployError

        _check_pipeline_option(pipeline)
        loaded = actions.load(config, env, pipeline=pipeline)
        checked = inspection.check(loaded, verbose=verbose)
        rows = views.redacted(checked, loaded.env.redactor.redact)
        needed = port_needs.needed_ports(loaded.pipeline, loaded.env, loaded.hosts)
        warnings = port_needs.firewall_warnings(loaded.env, needed)
        reached = port_needs.reach(needed) if ports else []
        out = console()
        if json:
            for row in rows:
                row["warnings"] = [w for w in warnings if w.startswith(f"{row['host']}: ")]
                row["ports"] = [
                    {"port": need.port, "check": need.check, "state": state}
                    for need, state in reached
                    if need.host == row["host"]
                ]
            views.print_json(out, rows)
        else:
            out.print(views.check_table(rows, loaded.env.name))
            for row in rows if verbose else []:
                out.print(views.reached_line(row))
            for warning in warnings:
                out.print(f"[yellow]warning: {escape(warning)}[/]")
            for need, state in reached:
                colour = {"open": "green", "refused": "yellow"}.get(state, "red")
                out.print(
                    f"{escape(need.host)}: port {need.port} [{colour}]{state}[/]"
                    f" ({escape(need.check)})"
                )
        failing = [row["host"] for row in rows if not row["ok"]]
        failing += [need.host for need, state in reached if state == "no answer"]
        if failing:
            raise DeployError(f"check failed on {', '.join(dict.fromkeys(failing))}")

    _run(body)


@_task(
    dry_run="read every host and say what setup would make and install; change nothing",
    pipeline="the pipeline whose needs are checked (a Python step: python3 and venv)",
)
def setup(
    c: Any,
    env: str | None = None,
    pipeline: str | None = None,
    hosts: str | None = None,
    roles: str | None = None,
    dry_run: bool = False,
    config: str = "deploy.toml",
) -> None:
    """Make hosts deploy-ready: directories, prerequisites, packages, firewall; idempotent."""

    def body() -> None:
        from deploylib import actions, provisioning
        from deploylib.errors import DeployError

        _check_pipeline_option(pipeline)
        loaded = actions.load(config, env, pipeline=pipeline, hosts=hosts, roles=roles)
        reporter = reporter_for(loaded.env, None, False)
        rows = provisioning.setup(loaded, reporter=reporter, dry_run=dry_run)
        out = console()
        for row in rows:
            _print_setup(out, row, dry_run=dry_run)
        failing = [row.host for row in rows if not row.ready]
        if failing:
            raise DeployError(f"setup: not ready: {', '.join(failing)}")
        if not dry_run and not any(row.changed for row in rows):
            out.print("nothing to change: every host was ready")

    _run(body)


def _print_setup(out: Any, row: Any, *, dry_run: bool) -> None:
    name = escape(row.host)
    would = "would " if dry_run else ""
    for path in row.made:
        out.print(f"{name}: {would}make {escape(path)}")
    if row.packages:
        installed = "install" if dry_run else "installed"
        out.print(f"{name}: {would}{installed} {escape(' '.join(row.packages))}")
    for line in row.firewall:
        out.print(f"{name}: firewall {would}{'change' if dry_run else 'changed'}: {escape(line)}")
    if dry_run and row.firewall and row.ruleset:
        out.print(f"{name}: the firewall's ruleset would be:")
        out.print(escape(row.ruleset.rstrip()), highlight=False)
    for what, fix in row.missing:
        out.print(f"[red]{name}: missing {escape(what)}[/] — {escape(fix)}")
    for warning in row.warnings:
        out.print(f"[yellow]{name}: {escape(warning)}[/]")
    if row.error:
        out.print(f"[red]{name}: {escape(row.error)}[/]")
    elif row.ready and not row.changed:
        out.print(f"{name}: ok, nothing to change")
    elif row.ready:
        out.print(f"{name}: ok")


@_task(
    force="overwrite the files that exist",
    preset="a Python web app: django, flask or fastapi (requirements, python_env, gunicorn)",
)
def init(c: Any, ci: str | None = None, force: bool = False, preset: str | None = None) -> None:
    """Scaffold deploy.toml, pipelines/web.py, tasks.py, .env.example and .gitignore lines."""

    def body() -> None:
        from deploylib.scaffold import init as scaffold

        here = Path.cwd()
        report = scaffold(here, ci=ci, force=force, preset=preset)
        out = console()
        for path in report.written:
            out.print(f"wrote {escape(str(path.relative_to(here)))}")
        for path in report.kept:
            out.print(f"left alone {escape(str(path.relative_to(here)))} (it exists; --force)")
        if report.ignored:
            out.print(f".gitignore: added {escape(' '.join(report.ignored))}")
        for todo in report.todo:
            out.print(f"[yellow]to do: {escape(todo)}[/]")

    _run(body)


@_task(yes="with --force: do not ask")
def unlock(
    c: Any,
    env: str | None = None,
    force: bool = False,
    yes: bool = False,
    config: str = "deploy.toml",
) -> None:
    """Remove a stale deploy lock (--force: any lock)."""

    def body() -> None:
        from deploylib import inspection
        from deploylib.config import load_environment

        environment = load_environment(Path(config), env or "")
        if force:
            ask(environment, yes, "remove the deploy lock whatever holds it (--force)")
        removed = inspection.unlock(environment, environment.hosts, force=force)
        console().print(f"unlocked: {', '.join(removed)}" if removed else "no lock was held")

    _run(body)


@_task(task_name="exec")
def exec_(
    c: Any,
    env: str | None = None,
    roles: str | None = None,
    hosts: str | None = None,
    once: bool = False,
    timeout: str | None = None,
    command: str | None = None,
    config: str = "deploy.toml",
) -> None:
    """Run a command in current on the chosen hosts, with the release's environment.

    deploylib exec --env E [--roles r] [--hosts a,b] [--once] -- CMD (with invoke: --command
    CMD). Each output line is prefixed by its host; the exit status is the worst host's
    (255: a host could not be reached; 130: Ctrl-C)."""

    def body() -> None:
        from deploylib import actions, oneoff
        from deploylib.config import load_environment
        from deploylib.remote.oneoff import command_of

        script = command_of(command)
        environment = load_environment(Path(config), env or "")
        chosen = actions.select_hosts(environment, hosts, roles)
        seconds = oneoff.timeout_of(environment, timeout)
        streamed = oneoff.exec_on(
            environment, chosen, script, _host_lines(environment), once=once, timeout=seconds
        )
        _end(streamed, follow=False)

    _run(body)


@_task(iterable=("path",))
def logs(
    c: Any,
    env: str | None = None,
    follow: bool = False,
    lines: int = 100,
    roles: str | None = None,
    hosts: str | None = None,
    path: list[str] | None = None,
    config: str = "deploy.toml",
) -> None:
    """Show the last lines of shared/log/*.log (or of PATHs) on every host, prefixed by host.

    deploylib logs --env E [--follow] [--lines N] [PATH...]: a PATH is relative to shared/.
    --follow goes on until Ctrl-C, which stops every remote tail (exit 0)."""

    def body() -> None:
        from deploylib import actions, oneoff
        from deploylib.config import load_environment

        environment = load_environment(Path(config), env or "")
        chosen = actions.select_hosts(environment, hosts, roles)
        streamed = oneoff.logs_of(
            environment,
            chosen,
            path or [],
            _host_lines(environment),
            count=lines,
            follow=follow,
        )
        _end(streamed, follow=follow)

    _run(body)


def _host_lines(environment: Environment) -> HostLines:
    import sys

    from deploylib.streaming import HostLines

    return HostLines(environment.redactor, sys.stdout, sys.stderr)


def _end(streamed: Streamed, *, follow: bool) -> None:
    """Exit with the worst host's status; Ctrl-C is 130, except when it ends ``--follow``."""
    if streamed.interrupted and not follow:
        raise KeyboardInterrupt
    status = streamed.exit_status()
    if status:
        failed = [
            f"{name} ({'unreachable' if r.unreachable else f'exit {r.exit_code}'})"
            for name, r in streamed.results.items()
            if name not in streamed.stopped and (r.exit_code or r.unreachable)
        ]
        console(stderr=True).print(f"[red]failed on[/] {escape(', '.join(failed))}")
        raise Exit(code=status)


ns = Collection(deploy, rollback, status, releases, check, setup, init, unlock, exec_, logs)

__all__ = ["ns"]
