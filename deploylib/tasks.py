"""The Invoke collection: ``from deploylib.tasks import ns`` in a tasks.py, or the ``deploylib``
program, which serves the same collection without one.

Tasks are thin: they call ``deploylib.actions`` and map ``DeployError``s to exit codes here,
in one place. Heavy imports happen inside the tasks, so ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import task

if TYPE_CHECKING:
    from rich.console import Console

    from deploylib.config import Environment
    from deploylib.reporting import JsonLinesReporter, Reporter

CONFIG_HELP = "path of deploy.toml (default: ./deploy.toml)"
ENV_HELP = "environment from deploy.toml, e.g. dev or prod"


def _run(body: Callable[[], None]) -> None:
    from deploylib.errors import DeployError

    try:
        body()
    except DeployError as exc:
        if not exc.reported:
            _console(stderr=True).print(f"[red]error:[/] {_escape(str(exc))}", soft_wrap=True)
        raise Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        _console(stderr=True).print("[red]interrupted[/]")
        raise Exit(code=130) from None


def _console(*, stderr: bool = False) -> Console:
    import shutil

    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        # piped output is read whole (logs, CI): never cut release ids to fit 80 columns
        console = Console(
            stderr=stderr, highlight=False, width=max(shutil.get_terminal_size().columns, 200)
        )
    return console


def _escape(text: str) -> str:
    """``text`` to print through rich: no markup, no terminal control sequences."""
    from rich.markup import escape

    from deploylib.text import printable

    return escape(printable(text))


def _reporter(env: Environment, events: str | None, verbose: bool) -> Reporter:
    from deploylib.reporting import ConsoleReporter, LiveReporter, Redacting

    console = _console()
    # a live table for fleets on a terminal; plain lines for logs, CI and --verbose
    live = console.is_terminal and not verbose
    reporters: list[Reporter] = [
        LiveReporter(console) if live else ConsoleReporter(console, verbose=verbose)
    ]
    if events:
        reporters.append(_events_file(events))
    if env.notify.webhook:
        from deploylib.reporting import Event, WebhookReporter

        terminal = Redacting(env.redactor, reporters[:1])

        def warn(message: str) -> None:
            terminal.emit(Event("warning", message))

        import getpass

        redact = env.redactor.redact  # the body's own fields pass the redactor too
        context = {
            "app": redact(env.app),
            "env": redact(env.name),
            "user": redact(getpass.getuser()),
            "hosts": [redact(h.name) for h in env.hosts],
        }
        reporters.append(WebhookReporter(env.notify.webhook, context, warn))
    return Redacting(env.redactor, reporters)


def _events_file(events: str) -> JsonLinesReporter:
    """The ``--events`` reporter; a file that cannot be opened is a ``ConfigError``."""
    from deploylib.errors import ConfigError
    from deploylib.reporting import JsonLinesReporter

    try:
        return JsonLinesReporter.open(Path(events))
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(f"cannot append to {events!r}: {reason}", key="--events") from None


def _confirm(env: Environment, hosts: int, yes: bool) -> None:
    """The production guard: ``confirm = true`` asks for the environment's name, or ``--yes``."""
    if env.confirm:
        what = f"{hosts} host{'s' if hosts != 1 else ''}, {env.deploy_to}"
        _ask(env, yes, what, key=f"environments.{env.name}.confirm")


def _ask(env: Environment, yes: bool, what: str, *, key: str = "--yes") -> None:
    """Have the user type the environment's name before something that changes it."""
    from deploylib.actions import is_interactive
    from deploylib.errors import ConfigError

    if yes:
        return
    if not is_interactive():
        raise ConfigError(
            f"environment {env.name!r} asks for confirmation; no terminal to ask on: pass --yes",
            file=str(env.config_file),
            key=key,
        )
    from rich.prompt import Prompt

    console = _console()
    console.print(f"[bold red]{_escape(env.name)}[/]: {_escape(what)}")
    answer = Prompt.ask(f"type [bold]{_escape(env.name)}[/] to go on", console=console)
    if answer.strip() != env.name:
        raise ConfigError("not confirmed; nothing was changed", key="confirm")


@task(
    auto_shortflags=False,
    help={
        "env": ENV_HELP,
        "pipeline": "pipeline name: pipelines/NAME.py (default: deploy.toml's pipeline)",
        "hosts": "only these hosts, comma-separated",
        "roles": "only hosts with these roles, comma-separated",
        "revision": "revision to record (default: git rev-parse HEAD)",
        "dry-run": "print the exact commands per host; change nothing",
        "yes": "skip the confirmation of environments with confirm = true",
        "events": "append JSON Lines events to FILE",
        "config": CONFIG_HELP,
        "verbose": "show every command as it runs",
    },
)
def deploy(
    c: Any,
    env: str | None = None,
    pipeline: str | None = None,
    hosts: str | None = None,
    roles: str | None = None,
    revision: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    events: str | None = None,
    config: str = "deploy.toml",
    verbose: bool = False,
) -> None:
    """Build, push, switch and verify a release; put every host back if anything fails."""

    def body() -> None:
        from deploylib import actions

        loaded = actions.load(config, env, pipeline=pipeline, hosts=hosts, roles=roles)
        reporter = _reporter(loaded.env, events, verbose)  # a bad --events fails before asking
        if not dry_run:
            _confirm(loaded.env, len(loaded.hosts), yes)
        actions.deploy(loaded, reporter=reporter, revision=revision, dry_run=dry_run)

    _run(body)


@task(
    auto_shortflags=False,
    help={
        "env": ENV_HELP,
        "to": "release id to go back to (default: the one before current, from the release log)",
        "yes": "skip the confirmation of environments with confirm = true",
        "events": "append JSON Lines events to FILE",
        "config": CONFIG_HELP,
        "verbose": "show every command as it runs",
    },
)
def rollback(
    c: Any,
    env: str | None = None,
    to: str | None = None,
    yes: bool = False,
    events: str | None = None,
    config: str = "deploy.toml",
    verbose: bool = False,
) -> None:
    """Switch every host back to the previous release (or --to RELEASE)."""

    def body() -> None:
        from deploylib import actions

        loaded = actions.load(config, env)
        reporter = _reporter(loaded.env, events, verbose)  # a bad --events fails before asking
        _confirm(loaded.env, len(loaded.hosts), yes)
        actions.rollback(loaded, reporter=reporter, to=to)

    _run(body)


@task(
    auto_shortflags=False,
    help={"env": ENV_HELP, "json": "print JSON instead of a table", "config": CONFIG_HELP},
)
def status(c: Any, env: str | None = None, json: bool = False, config: str = "deploy.toml") -> None:
    """Per host: current release, revision, deployed at/by, lock."""
    _show(config, env, json, "status")


@task(
    auto_shortflags=False,
    help={"env": ENV_HELP, "json": "print JSON instead of a table", "config": CONFIG_HELP},
)
def releases(
    c: Any, env: str | None = None, json: bool = False, config: str = "deploy.toml"
) -> None:
    """Release history with outcomes, from every host's release log."""
    _show(config, env, json, "releases")


def _show(config: str, env: str | None, as_json: bool, what: str) -> None:
    """``status`` and ``releases``: read every host, print a table or JSON."""

    def body() -> None:
        from deploylib import actions, views
        from deploylib.config import load_environment
        from deploylib.errors import DeployError

        environment = load_environment(Path(config), env or "")
        if what == "status":
            rows = actions.status_rows(environment, environment.hosts)
        else:
            rows = actions.release_history(environment, environment.hosts)
        rows = views.redacted(rows, environment.redactor.redact)
        if what == "status":
            table = views.status_table(rows, environment.name)
        else:
            table = views.releases_table(rows, environment.name)
        console = _console()
        if as_json:
            views.print_json(console, rows)
        else:
            console.print(table)
        # a status row with an error is a host that could not be read (a release row's error
        # is that release's; release_history raises when a host cannot be read)
        unreachable = [row["host"] for row in rows if what == "status" and row.get("error")]
        if unreachable:
            raise DeployError(f"could not read {', '.join(unreachable)}")

    _run(body)


@task(
    auto_shortflags=False,
    help={
        "env": ENV_HELP,
        "pipeline": "pipeline to validate too",
        "json": "print JSON",
        "config": CONFIG_HELP,
    },
)
def check(
    c: Any,
    env: str | None = None,
    pipeline: str | None = None,
    json: bool = False,
    config: str = "deploy.toml",
) -> None:
    """Validate config and pipeline, reach every host; change nothing."""

    def body() -> None:
        from deploylib import actions, views
        from deploylib.errors import DeployError

        loaded = actions.load(config, env, pipeline=pipeline)
        rows = views.redacted(actions.check(loaded), loaded.env.redactor.redact)
        console = _console()
        if json:
            views.print_json(console, rows)
        else:
            console.print(views.check_table(rows, loaded.env.name))
        failing = [row["host"] for row in rows if not row["ok"]]
        if failing:
            raise DeployError(f"check failed on {', '.join(failing)}")

    _run(body)


@task(auto_shortflags=False, help={"ci": "also write a CI workflow: github"})
def init(c: Any, ci: str | None = None) -> None:
    """Scaffold deploy.toml, pipelines/web.py, tasks.py and .env.example here."""

    def body() -> None:
        from deploylib.scaffold import init as scaffold

        for path in scaffold(Path.cwd(), ci=ci):
            _console().print(f"wrote {_escape(str(path.relative_to(Path.cwd())))}")

    _run(body)


@task(
    auto_shortflags=False,
    help={
        "env": ENV_HELP,
        "force": "remove the lock even if its deploy looks alive (asks first)",
        "yes": "with --force: do not ask",
        "config": CONFIG_HELP,
    },
)
def unlock(
    c: Any,
    env: str | None = None,
    force: bool = False,
    yes: bool = False,
    config: str = "deploy.toml",
) -> None:
    """Remove a stale deploy lock (--force: any lock)."""

    def body() -> None:
        from deploylib import actions
        from deploylib.config import load_environment

        environment = load_environment(Path(config), env or "")
        if force:
            _ask(environment, yes, "remove the deploy lock whatever holds it (--force)")
        removed = actions.unlock(environment, environment.hosts, force=force)
        _console().print(f"unlocked: {', '.join(removed)}" if removed else "no lock was held")

    _run(body)


ns = Collection(deploy, rollback, status, releases, check, init, unlock)

__all__ = ["ns"]
