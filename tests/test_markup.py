"""Specifies deploylib.markup: console markup read without rich says what rich says. Hostile
text escaped reads back as itself; a reporter's lines are the same through ``PlainConsole`` as
through rich's console writing to a pipe (no colours, emoji codes or tabs involved)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.markup import escape as rich_escape

from deploylib.markup import PlainConsole, escape, plain
from deploylib.reporting import ConsoleReporter, Event

HOSTILE = [
    "plain words",
    "[bold]not bold[/]",
    "[/]",
    "[red]",
    "\\[red]",
    "\\\\[red]x[/]",
    "ends with a backslash\\",
    "ends with two\\\\",
    "C:\\path\\[link=http://x]\\",
    "[ brackets ] [1] [a-b] [[x]]",
    "[@click=app.quit]x[/]",
    "a [ b",
    "100%] done [",
    "unicode ✓ → ✗ [ü]",
]


def through_rich(markup: str) -> str:
    out = io.StringIO()
    console = Console(file=out, color_system=None, width=10_000, highlight=False, emoji=False)
    console.print(markup, soft_wrap=True)
    return out.getvalue()


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_reads_back_as_itself_here_and_in_rich(text: str) -> None:
    assert escape(text) == rich_escape(text)
    markup = f"[green]✓ {escape(text)}[/] and [dim]{escape(text)}[/]"
    assert through_rich(markup) == plain(markup) + "\n"
    if not text.endswith("\\\\"):  # rich's escape leaves an even run before a tag as it is
        assert plain(markup) == f"✓ {text} and {text}"


@pytest.mark.parametrize("markup", ["[bold]x[/bold] \\[y] \\\\[dim]z[/]", "no tags", "[x]"])
def test_markup_reads_as_rich_renders_it(markup: str) -> None:
    assert through_rich(markup) == plain(markup) + "\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_a_reporters_lines_are_the_same_through_both_consoles(verbose: bool) -> None:
    events = [
        Event("deploy.start", "deploy app [x] to prod", data={"hosts": ["h1", "h2"]}),
        Event("step.ok", "", host="h1[/]", step="push", data={"seconds": 0.25}),
        Event("operation", "echo '[red]'; rm -rf \\[", host="h1", step="push"),
        Event("output", "a line \\ with [bold] tags [/]", host="h2", step="run"),
        Event("check.attempt", "HTTP 503 [busy]", host="h2", step="verify", data={"ok": False}),
        Event("warning", "host said [blink]", host="h2"),
        Event("deploy.failed", "failed: [/] exit 1\\"),
    ]
    ours, theirs = io.StringIO(), io.StringIO()
    plain_reporter = ConsoleReporter(PlainConsole(file=ours), verbose=verbose)
    rich_console = Console(
        file=theirs, color_system=None, width=10_000, highlight=False, emoji=False
    )
    rich_reporter = ConsoleReporter(rich_console, verbose=verbose)
    for event in events:
        plain_reporter.emit(event)
        rich_reporter.emit(event)
    assert ours.getvalue() == theirs.getvalue()
    assert "[x]" in ours.getvalue() and "h1[/]" in ours.getvalue()
