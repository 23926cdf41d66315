"""How a deploy looks: one ``Reporter`` protocol, several renderings.

The runner emits ``Event``s; a reporter shows them. ``ConsoleReporter`` prints coloured lines
with rich, ``JsonLinesReporter`` writes one JSON object per event (``--events FILE``),
``RecordingReporter`` keeps them for tests. ``Redacting`` sits in front of all of them, so no
reporter ever sees a secret value or a terminal escape sequence.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from deploylib.secrets import Redactor
from deploylib.text import printable


@dataclass(frozen=True)
class Event:
    """Something that happened. ``kind`` is dotted: ``deploy.start``, ``step.failed``, ..."""

    kind: str
    message: str = ""
    host: str | None = None
    step: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class Redacting:
    """Cleans every event, then hands it to each reporter.

    Every string of the event (message, host, step, and each string inside ``data``) has its
    secret values masked and is made ``printable``: no reporter ever sees a secret value or a
    terminal escape sequence. Masking runs again after the escape sequences are gone, so a
    secret split by one is masked too.

    A reporter that raises (an ``--events`` file on a full disk) is dropped, and the others are
    told: reporting never stops a deploy, and above all not its put-back."""

    def __init__(self, redactor: Redactor, reporters: Sequence[Reporter]) -> None:
        self.redactor = redactor
        self.reporters = list(reporters)

    def emit(self, event: Event) -> None:
        clean = replace(
            event,
            message=self.clean_text(event.message),
            host=self.clean_text(event.host) if event.host else event.host,
            step=self.clean_text(event.step) if event.step else event.step,
            data=self._clean(event.data),
        )
        for reporter in list(self.reporters):
            try:
                reporter.emit(clean)
            except Exception as exc:
                self._drop(reporter, exc)

    def _drop(self, reporter: Reporter, exc: Exception) -> None:
        if reporter not in self.reporters:
            return
        self.reporters.remove(reporter)
        notice = Event(
            "warning",
            self.clean_text(
                f"{reporter.__class__.__name__} stopped reporting: {exc.__class__.__name__}: {exc}"
            ),
        )
        for other in list(self.reporters):
            try:
                other.emit(notice)
            except Exception as again:
                self._drop(other, again)

    def clean_text(self, text: str) -> str:
        """``text`` without secrets and without terminal control sequences."""
        redact = self.redactor.redact
        return redact(printable(redact(text)))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.clean_text(value)
        if isinstance(value, Mapping):
            return {self._clean(k): self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.clean_text(str(value))  # what a reporter would print of it


class RecordingReporter:
    """Keeps every event; for tests."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def text(self) -> str:
        return "\n".join(
            f"{e.kind} {e.host or ''} {e.step or ''} {e.message} {e.data}" for e in self.events
        )


class JsonLinesReporter:
    """One JSON object per event, flushed at once: safe to ``tail -f``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> JsonLinesReporter:
        return cls(path.open("a", encoding="utf-8"))

    def emit(self, event: Event) -> None:
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "kind": event.kind,
        }
        if event.host:
            record["host"] = event.host
        if event.step:
            record["step"] = event.step
        if event.message:
            record["message"] = event.message
        record.update(event.data)
        with self._lock:
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self._stream.close()


_MARKS = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "start": "[dim]…[/]"}


class ConsoleReporter:
    """Coloured lines on a terminal, plain lines elsewhere (rich decides)."""

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        self.console = console or Console(highlight=False)
        self.verbose = verbose
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        line = self._format(event)
        if line is not None:
            with self._lock:
                self.console.print(line, soft_wrap=True)

    def _format(self, event: Event) -> str | None:
        kind = event.kind
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
            mark = _MARKS["ok"] if event.data.get("ok") else _MARKS["failed"]
            attempt = event.data.get("attempt")
            return f"  {step:<10} {host:<16} attempt {attempt}: {mark} [dim]{message}[/]"
        if kind == "operation":
            return f"  [dim]{host}: {message}[/]" if self.verbose else None
        if kind == "dry":
            return f"  [cyan]{host}[/] {message}"
        if kind in ("revert", "warning"):
            return f"  [yellow]{host + ': ' if host else ''}{message}[/]"
        if kind.endswith(".ok"):
            return f"[green]✓ {message}[/]"
        if kind.endswith(".failed"):
            return f"[red]✗ {message}[/]"
        return f"  {host + ': ' if host else ''}{message}"


_STATUS_STYLE = {"ok": "green", "failed": "red", "running": "cyan", "waiting": "dim"}


class LiveReporter(ConsoleReporter):
    """On a terminal, a fleet's progress as one live table, a row per host.

    Runs on one host print lines as ``ConsoleReporter`` does. Whatever matters after the run —
    failures, warnings, put-backs, the final placement — is printed as lines too.
    """

    def __init__(self, console: Console | None = None, *, verbose: bool = False) -> None:
        super().__init__(console, verbose=verbose)
        self._live: Live | None = None
        self._rows: dict[str, list[str]] = {}

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        kind = event.kind
        run_event = not kind.startswith(("step.", "check.")) and "." in kind
        if run_event and kind.endswith(".start"):
            self.console.print(self._format(event), soft_wrap=True)
            hosts = [str(h) for h in event.data.get("hosts") or []]
            if len(hosts) > 1 and self.console.is_terminal:
                self._rows = {host: ["", "waiting", ""] for host in hosts}
                self._live = Live(self._table(), console=self.console, refresh_per_second=8)
                self._live.start()
            return
        if self._live is None:
            line = self._format(event)
            if line is not None:
                self.console.print(line, soft_wrap=True)
            return
        row = self._rows.get(event.host or "")
        if kind == "step.start" and row is not None:
            row[:] = [event.step or "", "running", ""]
        elif kind == "step.ok" and row is not None:
            seconds = event.data.get("seconds")
            row[:] = [event.step or "", "ok", f"{seconds:.2f}s" if seconds else ""]
        elif kind == "step.failed" and row is not None:
            row[:] = [event.step or "", "failed", event.message]
        elif kind == "check.attempt" and row is not None:
            if not event.data.get("ok"):
                row[2] = f"attempt {event.data.get('attempt')}: {event.message}"
        elif run_event:  # the run's own .ok / .failed: the table stays, the outcome follows
            self._live.update(self._table())
            self._live.stop()
            self._live = None
            line = self._format(event)
            if line is not None:
                self.console.print(line, soft_wrap=True)
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


class WebhookReporter:
    """POSTs a JSON document to ``url`` when a deploy or rollback starts and ends.

    Sits behind ``Redacting`` like every reporter. A notification never fails or holds up the
    deploy: ``timeout`` (5 s) bounds each POST as a whole (connect, sending, the answer's
    headers and body), so a webhook that answers a byte at a time is cut off at the deadline;
    Ctrl-C during a notification ends it at once. A failure, a timeout or an interrupt is told
    to ``on_error`` and ``emit`` returns normally — except Ctrl-C during a ``.start``
    notification, which nothing has been done after yet: it goes on up and stops the run there.
    """

    KINDS = frozenset(
        {
            "deploy.start",
            "deploy.ok",
            "deploy.failed",
            "rollback.start",
            "rollback.ok",
            "rollback.failed",
        }
    )

    def __init__(
        self,
        url: str,
        context: Mapping[str, Any],
        on_error: Callable[[str], None],
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.context = dict(context)
        self.on_error = on_error
        self.timeout = timeout

    #: what of an event's data the webhook carries
    FIELDS = ("release", "placement", "doubts", "revision")

    def emit(self, event: Event) -> None:
        if event.kind not in self.KINDS:
            return
        from deploylib.probes import post_json

        body = {
            "event": event.kind,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "message": event.message,
            **self.context,
            **{
                k: v
                for k, v in event.data.items()
                if k in ("release", "placement", "doubts", "revision")
            },
        }
        try:
            post_json(self.url, body, timeout=self.timeout)
        except KeyboardInterrupt:
            self.on_error(f"notify webhook: {event.kind} not sent: interrupted")
            if event.kind.endswith(".start"):
                raise
        except (OSError, ValueError) as exc:  # DeadlineExceeded is a TimeoutError
            self.on_error(f"notify webhook: {event.kind}: {exc.__class__.__name__}: {exc}")
