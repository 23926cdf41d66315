"""What the command line shows and asks on the terminal: a console that never cuts lines when
piped, host text escaped for console markup, the reporters of a deploy or rollback
(``--verbose``, ``--events``, the webhook), and the confirmation an environment with
``confirm = true`` asks for.

Rich and the reporters are imported inside the functions, so ``--help`` stays fast; lines of
markup that go to a pipe (``lines``) are printed without rich at all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from deploylib.config import Environment
    from deploylib.reporting import JsonLinesReporter, Reporter
    from deploylib.reporting.console import Printer


def console(*, stderr: bool = False) -> Console:
    """Rich's console, as wide as the terminal; at least 200 columns when piped."""
    import shutil

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        # piped output is read whole (logs, CI): never cut release ids to fit 80 columns
        out = Console(
            stderr=stderr, highlight=False, width=max(shutil.get_terminal_size().columns, 200)
        )
    return out


def lines(*, stderr: bool = False) -> Printer:
    """Where lines of markup go: rich's console (``console``) when the stream may be a
    terminal as rich judges one (a tty, or ``FORCE_COLOR`` / ``TTY_COMPATIBLE=1`` set), else
    plain lines, without importing rich."""
    stream = sys.stderr if stderr else sys.stdout
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible != "0" and (compatible == "1" or "FORCE_COLOR" in os.environ or _isatty(stream)):
        return console(stderr=stderr)
    from deploylib.markup import PlainConsole

    return PlainConsole(stderr=stderr)


def _isatty(stream: object) -> bool:
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except ValueError:  # closed
        return False


def escape(text: str) -> str:
    """``text`` to print as console markup: no markup, no terminal control sequences."""
    from deploylib.markup import escape as escape_markup
    from deploylib.text import printable

    return escape_markup(printable(text))


def reporter_for(
    env: Environment,
    events: str | None,
    verbose: bool,
    *,
    dry_run: bool = False,
    what: str = "deploy",
) -> Reporter:
    """The reporters of a deploy or rollback (``what``), all behind the environment's
    redactor: the terminal, ``--events``, the run's log file (``log_path`` says where), the
    webhook. A dry run notifies nobody: no webhook."""
    from deploylib.reporting import ConsoleReporter, Redacting

    out = lines()
    # a live table for fleets on a terminal; plain lines for logs, CI and --verbose
    reporters: list[Reporter] = []
    if out.is_terminal and not verbose:
        from deploylib.reporting.live import LiveReporter

        reporters.append(LiveReporter(console()))
    else:
        reporters.append(ConsoleReporter(out, verbose=verbose))
    if events is not None:
        reporters.append(_events_file(events))
    if env.log_dir is not None:
        from deploylib.reporting import LogFileReporter

        kind = "dry-run" if dry_run else what
        reporters.append(LogFileReporter(env.log_dir, env.name, kind, keep=env.keep_logs))
    if env.notify.webhook and not dry_run:
        from deploylib.reporting import Event, WebhookReporter

        # what becomes of each notification: on the terminal and in the --events file
        others = Redacting(env.redactor, list(reporters))

        def warn(message: str) -> None:
            others.emit(Event("notify.failed", message))

        def sent(message: str) -> None:
            others.emit(Event("notify.sent", message))

        from deploylib.repository import deployer

        redact = env.redactor.redact  # the body's own fields pass the redactor too
        context = {
            "app": redact(env.app),
            "env": redact(env.name),
            "user": redact(deployer(env.project_dir)),
            "hosts": [redact(h.name) for h in env.hosts],
        }
        reporters.append(WebhookReporter(env.notify.webhook, context, warn, on_sent=sent))
    return Redacting(env.redactor, reporters)


def _events_file(events: str) -> JsonLinesReporter:
    """The ``--events`` reporter; a file that cannot be opened is a ``ConfigError``."""
    from deploylib.errors import ConfigError
    from deploylib.reporting import JsonLinesReporter

    if not events.strip():
        raise ConfigError("names no file", key="--events")
    try:
        return JsonLinesReporter.open(Path(events))
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(f"cannot append to {events!r}: {reason}", key="--events") from None


def confirm(env: Environment, hosts: int, yes: bool) -> None:
    """The production guard: ``confirm = true`` asks for the environment's name, or ``--yes``."""
    if env.confirm:
        what = f"{hosts} host{'s' if hosts != 1 else ''}, {env.deploy_to}"
        ask(env, yes, what, key=f"environments.{env.name}.confirm")


def ask(env: Environment, yes: bool, what: str, *, key: str = "--yes") -> None:
    """Have the user type the environment's name before something that changes it."""
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

    out = console()
    out.print(f"[bold red]{escape(env.name)}[/]: {escape(what)}")
    answer = Prompt.ask(f"type [bold]{escape(env.name)}[/] to go on", console=out)
    if answer.strip() != env.name:
        raise ConfigError("not confirmed; nothing was changed", key="confirm")


def is_interactive() -> bool:
    """Whether there is someone to ask: stdin is a terminal and ``CI`` is not set."""
    return sys.stdin.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def log_path(reporter: Reporter) -> Path | None:
    """Where the run's log file was written (None: no log, or nothing was written)."""
    from deploylib.reporting import LogFileReporter

    for each in getattr(reporter, "reporters", []):
        if isinstance(each, LogFileReporter) and each.written:
            return each.path
    return None


def say_log(reporter: Reporter) -> None:
    """The last line of a deploy or rollback: where its whole log is."""
    path = log_path(reporter)
    if path is None:
        return
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    lines(stderr=True).print(f"[dim]log: {escape(str(shown))}[/]", soft_wrap=True)
