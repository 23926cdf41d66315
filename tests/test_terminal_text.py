"""Text from hosts reaches the terminal without escape sequences or raw control characters."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploylib.reporting import Event, JsonLinesReporter, RecordingReporter, Redacting
from deploylib.secrets import Redactor
from deploylib.text import printable
from tests.conftest import BASIC_PIPELINE, Project

HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J\x1b[1A\x1b[31mred\x1b[0m\rover\x07bell\x9b2Jc1\x1bc\u202eevil\x00\x7f"
)
# what must never reach a terminal: C0 controls but tab and newline, DEL, C1, bidi overrides
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def test_printable_removes_sequences_and_shows_other_controls() -> None:
    assert printable(HOSTILE) == "redover\\x07bellc1\\u202eevil\\x00\\x7f".replace(
        "redover", "red\\rover"
    )
    assert printable("tab\tand\nnewline, é漢字") == "tab\tand\nnewline, é漢字"
    assert printable("windows\r\nline\r\n") == "windows\nline\n"
    assert printable("unterminated \x1b]0;title") == "unterminated \\x1b]0;title"
    assert printable("\x1bP1$r\x1b\\dcs gone") == "dcs gone"
    assert printable("\x1b[12") == "\\x1b[12"


@given(st.text())
def test_printable_never_leaves_a_control_character(text: str) -> None:
    assert not RAW_CONTROL.search(printable(text))


def test_redacting_cleans_every_string_of_an_event_for_every_reporter() -> None:
    import io

    recording, stream = RecordingReporter(), io.StringIO()
    redacting = Redacting(Redactor(["s3cr3t"]), [recording, JsonLinesReporter(stream)])
    redacting.emit(
        Event(
            "step.failed",
            "out: s3c\x1b[0mr3t " + HOSTILE,
            host="h\x1b[2J",
            step="run\x07",
            data={"placement": {"h\x07": "r\x1b]0;x\x07"}, "list": ["\x9b1m"], "n": 3},
        )
    )
    [event] = recording.events
    assert "s3cr3t" not in recording.text() and "***" in event.message  # split by an escape
    everything = recording.text() + stream.getvalue()
    assert not RAW_CONTROL.search(everything)
    assert event.data["n"] == 3 and event.host == "h" and event.step == "run\\x07"
    assert json.loads(stream.getvalue())["placement"] == {"h\\x07": "r"}


PRINTS_ESCAPES = BASIC_PIPELINE.replace(
    'run("test ! -e FAIL_PREPARE", cwd="{release_path}"),',
    "run(\"printf '\\\\033]0;pwned\\\\007\\\\033[2J\\\\033[1Awiped\\\\rover\\\\007\\\\302\\\\233"
    "2J\\\\033c' >&2; exit 1\"),",
)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_failing_step_cannot_write_escape_sequences_to_the_terminal(
    project: Project, verbose: bool
) -> None:
    project.write("pipelines/web.py", PRINTS_ESCAPES)

    result = project.cli("deploy", "--env", "dev", *(["--verbose"] if verbose else []))

    assert result.returncode == 1, result.stdout + result.stderr
    shown = result.stdout + result.stderr
    # the text is there, its controls visible; the window title sequence went whole
    assert "exit 1: wiped\\rover\\x07" in shown and "pwned\\x07" not in shown
    assert not RAW_CONTROL.search(shown), repr(shown)


def hostile_host_state(project: Project) -> None:
    """A deployed target whose lock owner and release log were written by someone hostile."""
    assert project.cli("deploy", "--env", "dev").returncode == 0
    lock = project.hold_lock(
        {
            "user": "eve\x1b]0;pwned\x07",
            "host": "h\x1b[2J",
            "pid": 1,
            "started_at": "now\x1b[1A\r",
            "release": "r\x9b2J",
        }
    )
    (lock / "heartbeat").touch()
    entry = project.log()[-1]
    entry.update(
        user="mallory\x1b[2J\x1b[1A\x7f", time=f"{entry['time']}\x07", error="x\x1b]0;t\x07"
    )
    project.append_log(entry)


@pytest.mark.parametrize("task", ["status", "releases"])
def test_status_and_releases_show_a_hostile_host_state_without_escapes(
    project: Project, task: str
) -> None:
    hostile_host_state(project)

    table = project.cli(task, "--env", "dev")
    as_json = project.cli(task, "--env", "dev", "--json")

    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    assert ("eve" if task == "status" else "mallory") in table.stdout
    assert not RAW_CONTROL.search(table.stdout + table.stderr), repr(table.stdout)
    assert not RAW_CONTROL.search(as_json.stdout), repr(as_json.stdout)
    rows = json.loads(as_json.stdout)  # JSON stays exact data: its escapes, not ours
    if task == "releases":
        assert rows[-1]["user"] == "mallory\x1b[2J\x1b[1A\x7f"


def test_a_hostile_lock_owner_in_the_lock_error_is_shown_without_escapes(
    project: Project,
) -> None:
    hostile_host_state(project)

    result = project.cli("deploy", "--env", "dev")

    assert result.returncode == 3
    assert "eve" in result.stderr + result.stdout
    assert not RAW_CONTROL.search(result.stdout + result.stderr), repr(result.stderr)
