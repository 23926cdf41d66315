"""Specifies how a command's stdin reaches an SSH host (``backends/ssh/channels``): bytes known
whole that fit in the channel's window are sent from the command's own thread, then EOF; more
bytes than the window takes, and a file's stream, are fed from a thread of their own while the
output is read. Whichever way, the host gets every byte, in order, and then end of file."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from deploylib.backends.ssh import SSHBackend
from deploylib.backends.ssh import channels as ssh_channels
from deploylib.commands import Command
from tests.conftest import Fleet

FleetOf = Callable[[int], Fleet]

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(fleet_of: FleetOf) -> Iterator[SSHBackend]:
    backend = fleet_of(1).backend()
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def feeders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each command's stdin was fed from."""
    seen: list[str] = []
    feed = ssh_channels._feed

    def recorded(*args: object) -> None:
        seen.append(threading.current_thread().name)
        feed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ssh_channels, "_feed", recorded)
    return seen


def sums(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


#: what arrives on stdin: its length and sha256
COUNT_AND_SUM = (
    'f=$(mktemp) && cat > "$f" && printf "%s %s\\n" "$(wc -c < "$f" | tr -d " ")"'
    ' "$(sha256sum < "$f" | cut -d" " -f1)"; rm -f "$f"'
)


def fed_from(seen: Sequence[str]) -> list[str]:
    me = threading.current_thread().name
    return ["this thread" if name == me else "a thread of its own" for name in seen]


def test_a_few_bytes_go_from_the_commands_own_thread_then_eof(
    backend: SSHBackend, feeders: list[str]
) -> None:
    data = b"line one\nline 'two' $(x)\n\x00\xff no newline at the end"
    # two readers in a row: the second sees end of file, so nothing waits for more
    result = backend.run(Command(f"{{ head -c 9 >/dev/null; {COUNT_AND_SUM}; }}", stdin=data))
    assert result.ok, result.stderr
    assert result.stdout.strip() == sums(data[9:])
    assert fed_from(feeders) == ["this thread"]


def test_no_stdin_is_end_of_file_at_once(backend: SSHBackend, feeders: list[str]) -> None:
    result = backend.run(Command("cat; echo done", timeout=10))
    assert result.ok and result.stdout == "done\n"
    assert fed_from(feeders) == ["this thread"]


def test_more_bytes_than_the_window_takes_are_fed_from_a_thread(
    backend: SSHBackend, feeders: list[str]
) -> None:
    data = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and more: beyond OpenSSH's 2 MiB window
    # the command writes before it reads: sending may wait for it, reading must not
    script = f"head -c 300000 /dev/zero; {{ {COUNT_AND_SUM}; }} >&2"
    result = backend.run(Command(script, stdin=data, timeout=30))
    assert result.ok, result.stderr
    assert len(result.stdout) == 300000
    assert result.stderr.strip() == sums(data)
    assert fed_from(feeders) == ["a thread of its own"]


def test_bytes_then_a_file_arrive_in_order(
    backend: SSHBackend, feeders: list[str], tmp_path: Path
) -> None:
    head = b"KEY=value\n\n"
    body = bytes(reversed(range(256))) * 5000
    path = tmp_path / "artifact"
    path.write_bytes(body)
    result = backend.run(Command(COUNT_AND_SUM, stdin=head, stdin_file=path, timeout=30))
    assert result.ok, result.stderr
    assert result.stdout.strip() == sums(head + body)
    assert fed_from(feeders) == ["a thread of its own"]
