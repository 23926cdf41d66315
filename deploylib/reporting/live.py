"""``LiveReporter``: a fleet's progress on a terminal as one live table, a row per host."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from deploylib.reporting.console import ConsoleReporter
from deploylib.reporting.events import Event

_STATUS_STYLE = {"ok": "green", "failed": "red", "running": "cyan", "waiting": "dim"}


class LiveReporter(ConsoleReporter):
    """On a terminal, a fleet's progress as one live table, a row per host.

    Runs on one host print lines as ``ConsoleReporter`` does. Whatever matters after the run —
    failures, warnings, put-backs, the final placement — is printed as lines too.
    """

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        console = console or Console(highlight=False)
        super().__init__(console, verbose=verbose)
        self._rich = console
        self._live: Live | None = None
        self._rows: dict[str, list[str]] = {}

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        kind = event.kind
        if kind == "output":
            return  # commands' output: --verbose (a console reporter) and the deploy's log
        # the run's own start and end (deploy.*, rollback.*), not lock.*, notify.*, ...
        run_event = kind.split(".", 1)[0] in ("deploy", "rollback") and "." in kind
        if run_event and kind.endswith(".start"):
            self._rich.print(self._format(event), soft_wrap=True)
            hosts = [str(h) for h in event.data.get("hosts") or []]
            if len(hosts) > 1 and self._rich.is_terminal:
                self._rows = {host: ["", "waiting", ""] for host in hosts}
                self._live = Live(self._table(), console=self._rich, refresh_per_second=8)
                self._live.start()
            return
        if self._live is None:
            line = self._format(event)
            if line is not None:
                self._rich.print(line, soft_wrap=True)
            return
        row = self._rows.get(event.host or "")
        if kind == "step.start" and row is not None:
            row[:] = [event.step or "", "running", ""]
        elif kind == "step.ok" and row is not None:
            seconds = event.data.get("seconds")
            row[:] = [event.step or "", "ok", f"{seconds:.2f}s" if seconds else ""]
        elif kind == "step.failed" and row is not None:
            row[:] = [event.step or "", "failed", event.message]
        elif kind == "progress" and row is not None:
            row[2] = event.message
        elif kind == "check.attempt" and row is not None:
            if not event.data.get("ok"):
                row[2] = f"attempt {event.data.get('attempt')}: {event.message}"
        elif run_event:  # the run's own .ok / .failed: the table stays, the outcome follows
            self._live.update(self._table())
            self._live.stop()
            self._live = None
            line = self._format(event)
            if line is not None:
                self._rich.print(line, soft_wrap=True)
            return
        else:
            line = self._format(event)
            if line is not None:
                self._live.console.print(line, soft_wrap=True)
        self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        for column in ("host", "step", "status", ""):
            table.add_column(column, no_wrap=column != "")
        for host, (step, status, detail) in self._rows.items():
            style = _STATUS_STYLE.get(status, "")
            table.add_row(
                escape(host), escape(step), f"[{style}]{status}[/]", f"[dim]{escape(detail)}[/]"
            )
        return table
