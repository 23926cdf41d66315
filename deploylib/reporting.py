"""How a deploy looks: one ``Reporter`` protocol, several renderings.

The runner emits ``Event``s; a reporter shows them. ``ConsoleReporter`` prints coloured lines
with rich, ``JsonLinesReporter`` writes one JSON object per event (``--events FILE``),
``RecordingReporter`` keeps them for tests. ``Redacting`` sits in front of all of them, so no
reporter ever sees a secret value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from rich.console import Console
from rich.markup import escape

from deploylib.secrets import Redactor


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
    """Masks secret values in every event, then hands it to each reporter."""

    def __init__(self, redactor: Redactor, reporters: Sequence[Reporter]) -> None:
        self.redactor = redactor
        self.reporters = list(reporters)

    def emit(self, event: Event) -> None:
        clean = replace(
            event, message=self.redactor.redact(event.message), data=self._clean(event.data)
        )
        for reporter in self.reporters:
            reporter.emit(clean)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redactor.redact(value)
        if isinstance(value, Mapping):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value


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
