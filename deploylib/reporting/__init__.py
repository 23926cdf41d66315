"""How a deploy looks: one ``Reporter`` protocol, several renderings.

The runner emits ``Event``s; a reporter shows them. ``ConsoleReporter`` prints coloured lines
with rich, ``JsonLinesReporter`` writes one JSON object per event (``--events FILE``),
``RecordingReporter`` keeps them for tests. ``Redacting`` sits in front of all of them, so no
reporter ever sees a secret value or a terminal escape sequence.

The modules, one per concern:

    events       ``Event`` and the ``Reporter`` protocol
    redacting    ``Redacting``: secrets masked and escape sequences removed from every event
                 before any reporter sees it; a reporter that fails is dropped
    console      ``ConsoleReporter``: one line per event through rich
    live         ``LiveReporter``: a fleet's progress as one live table on a terminal (imported
                 on first use: it needs rich)
    json_lines   ``JsonLinesReporter``: one JSON object per event
    log_file     ``LogFileReporter``: the whole run, output included, in a file of its own
    schema       the pydantic models of ``--events`` lines (imported only where validated)
    recording    ``RecordingReporter``: events kept in memory, for tests
    webhook      ``WebhookReporter``: a POST when a deploy or rollback starts and ends

Everything callers use is importable from ``deploylib.reporting`` itself.
"""

from __future__ import annotations

from typing import Any

from deploylib.reporting.console import ConsoleReporter
from deploylib.reporting.events import Event, Reporter
from deploylib.reporting.json_lines import JsonLinesReporter
from deploylib.reporting.log_file import LogFileReporter
from deploylib.reporting.recording import RecordingReporter, SilentReporter
from deploylib.reporting.redacting import Redacting
from deploylib.reporting.webhook import WebhookReporter

__all__ = [
    "ConsoleReporter",
    "Event",
    "JsonLinesReporter",
    "LiveReporter",
    "LogFileReporter",
    "RecordingReporter",
    "Redacting",
    "Reporter",
    "SilentReporter",
    "WebhookReporter",
]


def __getattr__(name: str) -> Any:
    """``LiveReporter`` on first use: it needs rich, which output that is not a terminal does
    without."""
    if name == "LiveReporter":
        from deploylib.reporting.live import LiveReporter

        return LiveReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
