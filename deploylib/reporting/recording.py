"""``RecordingReporter``: every event kept in memory, for tests; ``SilentReporter``: none kept,
for runs whose results say what happened (the read-only tasks, the Python API)."""

from __future__ import annotations

from deploylib.reporting.events import Event


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


class SilentReporter:
    """Keeps and shows nothing."""

    def emit(self, event: Event) -> None:
        del event
