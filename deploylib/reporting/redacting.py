"""``Redacting``: every event cleaned of secrets and terminal escape sequences before any
reporter sees it; a reporter that fails is dropped, never the deploy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from deploylib.reporting.events import Event, Reporter
from deploylib.secrets import Redactor
from deploylib.text import printable


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

    @property
    def wants_live_output(self) -> bool:
        """Some reporter shows commands' output as it arrives (``--verbose``)."""
        return any(getattr(r, "wants_live_output", False) for r in self.reporters)

    @property
    def wants_output(self) -> bool:
        """Some reporter keeps commands' output (the deploy's log file)."""
        return any(getattr(r, "wants_output", False) for r in self.reporters)

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
