"""``ConsoleReporter``: an event as one line of console markup, coloured by rich on a terminal,
plain elsewhere (``deploylib.markup``: rich is not imported for a pipe)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from deploylib.markup import escape
from deploylib.reporting.events import Event

if TYPE_CHECKING:
    from rich.console import Console

_MARKS = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "start": "[dim]…[/]"}


#: events shown only with ``--verbose``: the locks taken and released, a notification sent
QUIET = frozenset({"lock.taken", "lock.released", "notify.sent"})
#: what only ``--verbose`` shows (and ``step.start``, never shown)
_VERBOSE_ONLY = QUIET | {"operation", "output", "step.start"}


class Printer(Protocol):
    """Where a reporter's lines of markup go: rich's ``Console`` on a terminal, a
    ``deploylib.markup.PlainConsole`` elsewhere."""

    @property
    def is_terminal(self) -> bool: ...

    def print(self, markup: str, /, *, soft_wrap: bool = ...) -> None: ...


def _rich_console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


class ConsoleReporter:
    """Coloured lines on a terminal, plain lines elsewhere (the console given decides)."""

    def __init__(self, console: Printer | None = None, *, verbose: bool = False) -> None:
        self.console: Printer = console or _rich_console()
        self.verbose = verbose
        self._lock = threading.Lock()

    @property
    def wants_live_output(self) -> bool:
        """``--verbose`` shows every command's output as it arrives."""
        return self.verbose

    def emit(self, event: Event) -> None:
        line = self._format(event)
        if line is not None:
            with self._lock:
                self.console.print(line, soft_wrap=True)

    def _format(self, event: Event) -> str | None:
        kind = event.kind
        if not self.verbose and kind in _VERBOSE_ONLY:
            # dropped before any escaping: an operation's text is a whole script, for every host
            return None
        message = escape(event.message)
        host = escape(event.host or "")
        step = escape(event.step or "")
        if kind.endswith(".start") and not kind.startswith("step"):
            return f"[bold]{message}[/]"
        if kind == "step.start":
            return None
        if kind == "step.ok":
            took = event.data.get("seconds")
            return f"  {step:<10} {host:<16} {_MARKS['ok']}" + (
                f" [dim]{took:.2f}s[/]" if took else ""
            )
        if kind == "step.failed":
            return f"  {step:<10} {host:<16} {_MARKS['failed']} [red]{message}[/]"
        if kind == "check.attempt":
            attempt = event.data.get("attempt")
            if event.data.get("ok"):
                mark = _MARKS["ok"]
            elif event.data.get("last", True):
                mark = _MARKS["failed"]
            else:  # attempts are left: the check is waiting for the app, not failing yet
                return f"  {step:<10} {host:<16} attempt {attempt}: [dim]waiting ({message})[/]"
            return f"  {step:<10} {host:<16} attempt {attempt}: {mark} [dim]{message}[/]"
        if kind == "operation":
            return f"  [dim]{host}: {message}[/]" if self.verbose else None
        if kind == "progress":  # with --verbose, the output line says it already
            return None if self.verbose else f"  [dim]{host} {step} |[/] {message}"
        if kind == "output":
            if not self.verbose:
                return None
            style = "yellow" if event.data.get("stream") == "stderr" else "default"
            return f"  [dim]{host} {step} |[/] [{style}]{message}[/]"
        if kind in QUIET:
            return f"  [dim]{message}[/]" if self.verbose else None
        if kind == "dry":
            return f"  [cyan]{host}[/] {message}"
        if kind in ("revert", "warning", "notify.failed"):
            return f"  [yellow]{host + ': ' if host else ''}{message}[/]"
        if kind.endswith(".ok"):
            if event.data.get("dry_run"):
                return f"[cyan]{message}[/]"  # nothing was done: no tick
            return f"[green]✓ {message}[/]"
        if kind.endswith(".failed"):
            return f"[red]✗ {message}[/]"
        return f"  {host + ': ' if host else ''}{message}"
