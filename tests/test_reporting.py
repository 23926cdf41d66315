"""How output looks: plain lines, the live fleet table, JSON lines, redaction."""

from __future__ import annotations

import io
import json

from rich.console import Console

from deploylib.reporting import (
    ConsoleReporter,
    Event,
    JsonLinesReporter,
    LiveReporter,
    RecordingReporter,
    Redacting,
)
from deploylib.secrets import Redactor

HOSTS = ["web1", "web2", "db1"]


def run_events(fail: str | None = None) -> list[Event]:
    events = [Event("deploy.start", "deploy app R to prod: 3 hosts", data={"hosts": HOSTS})]
    for host in HOSTS:
        events.append(Event("step.start", host=host, step="push"))
    for host in HOSTS:
        if host == fail:
            events.append(Event("step.failed", "exit 1: [bold]boom[/]", host=host, step="push"))
        else:
            events.append(Event("step.ok", host=host, step="push", data={"seconds": 0.25}))
    if fail:
        events.append(Event("revert", "putting back R0", host="web1"))
        events.append(Event("deploy.failed", "deploy failed: every target is back"))
    else:
        events.append(Event("deploy.ok", "deployed R to prod"))
    return events


def terminal() -> Console:
    return Console(force_terminal=True, record=True, width=100, color_system=None)


def test_live_table_for_a_fleet_on_a_terminal() -> None:
    console = terminal()
    reporter = LiveReporter(console)
    for event in run_events(fail="web2"):
        reporter.emit(event)
    text = console.export_text()
    # the final table: one row per host, with its last step and status
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line[:4] in ("web1", "web2", "db1 ")
    }
    assert rows["web1"][1:3] == ["push", "ok"] and rows["db1"][1:3] == ["push", "ok"]
    assert rows["web2"][1:3] == ["push", "failed"]
    assert "[bold]boom[/]" in text  # host output is shown as written, never as markup
    assert "web1: putting back R0" in text and "✗ deploy failed" in text


def test_plain_lines_off_a_terminal_and_for_one_host() -> None:
    stream = io.StringIO()
    console = Console(file=stream, width=100, color_system=None)
    reporter = LiveReporter(console)  # not a terminal: lines, as ConsoleReporter prints them
    for event in run_events():
        reporter.emit(event)
    plain = io.StringIO()
    for event in run_events():
        ConsoleReporter(Console(file=plain, width=100, color_system=None)).emit(event)
    assert stream.getvalue() == plain.getvalue()
    assert "  push       web1             ✓ 0.25s" in stream.getvalue()


def test_redacting_masks_every_reporter_and_json_lines_are_json() -> None:
    stream = io.StringIO()
    recording = RecordingReporter()
    reporter = Redacting(Redactor(["hunter2-secret"]), [recording, JsonLinesReporter(stream)])
    reporter.emit(
        Event(
            "step.failed",
            "token hunter2-secret leaked",
            host="h",
            step="run",
            data={"nested": ["hunter2-secret"]},
        )
    )
    assert "hunter2-secret" not in recording.text() + stream.getvalue()
    record = json.loads(stream.getvalue())
    assert record["message"] == "token *** leaked" and record["nested"] == ["***"]
    assert record["event"] == "step.failed" and record["host"] == "h" and "ts" in record
