"""Specifies, in the shells a login may have (and under the options its start-up may set:
`set -e`, `set -f`, bash's `failglob`), the pieces of the lock, push and record commands that
the shell does itself: the state's log section (the count of lines and their tail, in one
process), the lock's owner written and read back by the shell, the release log's new line
written by the shell, the free space read from df without awk; and that nothing a file or a
name on the target holds can pass for one of the state read's own marks."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from deploylib.remote.free_space import available_kb, set_available_kb
from deploylib.remote.layout import Layout
from deploylib.remote.lock import LOCK_HELD_EXIT, lock_command
from deploylib.remote.log import LogEntry, record_command
from deploylib.remote.python_env import prune_lines, python_dir
from deploylib.remote.reading import LINE_BREAK_LINK, LOG_TAIL, parse_state, state_script
from deploylib.remote.release import remove_release_command, space_check

SHELLS = [s for s in ("sh", "bash", "dash") if shutil.which(s)]
TOKEN, OTHER = "ab" * 8, "cd" * 8


def run(shell: str, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    shell_path = shutil.which(shell)
    assert shell_path is not None
    return subprocess.run([shell_path, "-c", script], input=stdin, capture_output=True, timeout=20)


def layout_in(tmp_path: Path) -> Layout:
    layout = Layout(str(tmp_path / "it's $(an) app"))
    Path(layout.meta).mkdir(parents=True)
    return layout


def line(release: str) -> str:
    return json.dumps({"event": "deploy", "outcome": "success", "release": release})


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("count", "newline_at_end"), [(0, True), (3, True), (3, False), (LOG_TAIL + 7, False)]
)
def test_the_log_section_counts_every_line_and_keeps_the_tail(
    tmp_path: Path, shell: str, count: int, newline_at_end: bool
) -> None:
    layout = layout_in(tmp_path)
    lines = [line(f"r{n}") for n in range(1, count + 1)]
    lines[1:2] = ["{torn"] if count > 1 else []  # a damaged second line
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    Path(layout.log).write_text(text)

    result = run(shell, state_script(layout))

    assert result.returncode == 0, result.stderr
    state = parse_state(result.stdout.decode(), layout)
    kept = lines[-LOG_TAIL:]
    assert state.log_start == max(1, len(lines) - LOG_TAIL + 1)
    assert [e["release"] for e in state.log] == [
        json.loads(x)["release"] for x in kept if x[0:2] == '{"'
    ]
    if count == 3:
        assert state.damaged == (2,)  # numbered as the file numbers it
    assert not any("lines=" in str(e) for e in state.log)


@pytest.mark.parametrize("shell", SHELLS)
def test_no_log_is_an_empty_log(tmp_path: Path, shell: str) -> None:
    layout = layout_in(tmp_path)
    result = run(shell, state_script(layout))
    state = parse_state(result.stdout.decode(), layout)
    assert result.returncode == 0 and state.log == () and state.log_start == 1


@pytest.mark.parametrize("shell", SHELLS)
def test_the_lock_writes_its_owner_and_reads_it_back_without_its_age(
    tmp_path: Path, shell: str
) -> None:
    layout = layout_in(tmp_path)
    owner = {"token": TOKEN, "user": 'it\'s \\ "me" $(x)', "pid": 7}

    taken = run(shell, lock_command(layout, owner).line, (json.dumps(owner) + "\n").encode())

    assert taken.returncode == 0, taken.stderr
    assert json.loads(Path(layout.lock, "owner.json").read_text()) == owner
    assert Path(layout.lock, "owner.json").read_text().count("\n") == 1
    state = parse_state(taken.stdout.decode(), layout)
    assert state.locked and state.lock_owner == owner and state.lock_age is None

    other = {"token": OTHER, "user": "someone else"}
    held = run(shell, lock_command(layout, other).line, (json.dumps(other) + "\n").encode())

    assert held.returncode == LOCK_HELD_EXIT
    state = parse_state(held.stdout.decode(), layout)
    assert state.lock_owner == owner  # the holder, not the one refused
    assert state.lock_age is not None and 0 <= state.lock_age < 60
    assert not Path(layout.lock_stage(OTHER)).exists()


def entry(release: str) -> LogEntry:
    return LogEntry(
        event="deploy",
        outcome="success",
        release=release,
        revision='it\'s \\ "x" $(y)',
        current=release,
        previous=None,
        user="me",
        controller="here",
        time="2026-11-28T12:00:00+00:00",
    )


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "before",
    [
        None,
        b"",
        b"{a}\n",
        b"{a}",
        # a torn tail, as a crash can leave one: kept byte for byte (NUL, CR, invalid UTF-8)
        b"{a}\r\n{b\x00\xff\r",
        b"{" + b"x" * 200_000,
    ],
    ids=["absent", "empty", "ended", "unended", "bytes", "long"],
)
@pytest.mark.parametrize("tools", ["system", "busybox"])
def test_the_record_adds_exactly_its_line(
    tmp_path: Path, shell: str, before: bytes | None, tools: str
) -> None:
    """Byte for byte, whatever the host's tools: busybox's awk (Alpine) would turn a NUL into a
    line break, so the log is never copied through awk."""
    layout = layout_in(tmp_path)
    if before is not None:
        Path(layout.log).write_bytes(before)
    new = entry("20261128T120000Z-abc")
    command = record_command(layout, new)
    assert isinstance(command.stdin, bytes)
    script = command.line
    if tools == "busybox":
        busybox = shutil.which("busybox")
        if busybox is None:
            pytest.skip("needs busybox (busybox-static, installed by .ci/run)")
        bin_dir = tmp_path / "busybox-bin"
        bin_dir.mkdir()
        for tool in ("awk", "cat", "tail", "mv", "rm", "mkdir"):
            (bin_dir / tool).symlink_to(busybox)
        script = f"PATH={shlex.quote(str(bin_dir))}:$PATH; {script}"

    result = run(shell, script, command.stdin)

    assert result.returncode == 0, result.stderr
    kept = (before or b"") + (b"\n" if before and not before.endswith(b"\n") else b"")
    assert Path(layout.log).read_bytes() == kept + new.as_json().encode() + b"\n"
    assert [p.name for p in Path(layout.meta).iterdir()] == ["releases.jsonl"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_release_log_that_is_not_a_file_is_left_alone_at_once(
    tmp_path: Path, shell: str, kind: str
) -> None:
    """A FIFO would hold the copy until the deadline (then leave the temporary file): the
    record fails at once instead, saying so, and leaves nothing."""
    layout = layout_in(tmp_path)
    if kind == "fifo":
        os.mkfifo(layout.log)
    else:
        os.mkdir(layout.log)
    command = record_command(layout, entry("20261128T120000Z-abc"))
    assert isinstance(command.stdin, bytes)

    result = run(shell, command.line, command.stdin)  # run's own timeout: 20 s

    assert result.returncode == 1
    assert b"could not write the release log" in result.stderr
    assert sorted(p.name for p in Path(layout.meta).iterdir()) == ["releases.jsonl"]


@pytest.mark.parametrize("shell", SHELLS)
def test_the_space_check_reads_df_without_awk(tmp_path: Path, shell: str) -> None:
    free = shutil.disk_usage(tmp_path).free
    assert run(shell, space_check(str(tmp_path), 1024)).returncode == 0
    refused = run(shell, space_check(str(tmp_path), free * 4 + (1 << 30)))
    assert refused.returncode == 1
    said = refused.stderr.decode()
    assert "not enough free space" in said
    # the MiB free, as df says them (within what changed on the disk in between)
    assert abs(int(said.split(" MiB are free")[0].split()[-1]) - free // (1 << 20)) < 64


FORGED = '@@deploylib:lock\nlocked\nage=1\n{"token": "forged"}\n@@deploylib:log\nlines=1\n' + line(
    "20990101T000000Z-evil"
)


@pytest.mark.parametrize("shell", SHELLS)
def test_what_files_hold_cannot_pass_for_a_section(tmp_path: Path, shell: str) -> None:
    """Every line a file holds is printed behind a "|": a release log, an owner, a slots file,
    a release directory's name or current's link text that look like the state's own marks
    are read as what they are."""
    layout = layout_in(tmp_path)
    Path(layout.log).write_text(line("20260101T000000Z-a") + "\n" + FORGED + "\n")
    Path(layout.meta, "slots.json").write_text(FORGED)
    Path(layout.lock).mkdir()
    Path(layout.lock, "owner.json").write_text(json.dumps({"token": OTHER}) + "\n" + FORGED)
    Path(layout.releases).mkdir()
    Path(layout.releases, "odd\n@@deploylib:end").mkdir()
    Path(layout.current).symlink_to("elsewhere\n@@deploylib:log\nlines=0")

    result = run(shell, state_script(layout))

    assert result.returncode == 0, result.stderr
    state = parse_state(result.stdout.decode(), layout)
    assert [e["release"] for e in state.log] == ["20260101T000000Z-a", "20990101T000000Z-evil"]
    assert state.damaged == tuple(range(2, 8))  # the forged lines, by their line numbers
    assert state.lock_owner is None  # more than one JSON line: not an owner
    assert state.current_kind == "foreign" and state.current_link == LINE_BREAK_LINK
    assert state.slots is None and state.releases == frozenset()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "link",
    [
        "elsewhere\n@@deploylib:current\nlink\n|releases/20260101T000000Z-a",
        "releases/20260101T000000Z-a\n",  # another directory than the release's
    ],
)
def test_line_breaks_in_names_and_link_text_forge_no_section(
    tmp_path: Path, shell: str, link: str
) -> None:
    layout = layout_in(tmp_path)
    real = Path(layout.releases, "20260101T000000Z-a")
    real.mkdir(parents=True)
    (real / "REVISION").write_text("x")
    Path(layout.releases, "x\n@@deploylib:releases\n|20990101T000000Z-b complete").mkdir()
    Path(layout.current).symlink_to(link)

    result = run(shell, state_script(layout))

    state = parse_state(result.stdout.decode(), layout)
    assert state.releases == state.complete == frozenset({"20260101T000000Z-a"})
    assert state.current is None and state.current_kind == "foreign"
    assert state.current_link == LINE_BREAK_LINK


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("link", ["releases/20260101T000000Z-a", "/x/it's a $(link) |"])
def test_a_links_text_is_read_whole(tmp_path: Path, shell: str, link: str) -> None:
    layout = layout_in(tmp_path)
    Path(layout.releases, "20260101T000000Z-a").mkdir(parents=True)
    Path(layout.current).symlink_to(link)
    state = parse_state(run(shell, state_script(layout)).stdout.decode(), layout)
    assert state.current_link == link


@pytest.mark.parametrize("shell", SHELLS)
def test_a_shell_with_set_e_still_prints_the_whole_state(tmp_path: Path, shell: str) -> None:
    """A login started with `set -e`: a part that finds nothing (a held lock without its
    owner, a live release without a manifest) neither ends the state read nor changes the
    lock command's exit status."""
    layout = layout_in(tmp_path)
    Path(layout.releases, "20260101T000000Z-a").mkdir(parents=True)
    Path(layout.current).symlink_to("releases/20260101T000000Z-a")
    Path(layout.lock).mkdir()  # held, with no owner.json
    owner = {"token": TOKEN}

    result = run(
        shell,
        f"set -e; {lock_command(layout, owner, manifest=True).line}",
        (json.dumps(owner) + "\n").encode(),
    )

    assert result.returncode == LOCK_HELD_EXIT, result.stderr
    assert result.stdout.decode().endswith("@@deploylib:end\n")
    state = parse_state(result.stdout.decode(), layout)
    assert state.locked and state.lock_owner is None and state.manifest == ""
    assert state.current == "20260101T000000Z-a"


def test_a_bash_with_failglob_reads_a_target_without_releases(tmp_path: Path) -> None:
    """bash's `failglob` stops a script at a ``*`` that matches nothing: not the state read of
    a target whose releases/ is still empty (a first deploy), nor the lock command."""
    layout = layout_in(tmp_path)
    Path(layout.releases).mkdir()
    owner = {"token": TOKEN}
    script = f"shopt -s failglob; {lock_command(layout, owner).line}"
    result = run("bash", script, (json.dumps(owner) + "\n").encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().endswith("@@deploylib:end\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_shell_with_set_f_still_lists_the_releases(tmp_path: Path, shell: str) -> None:
    layout = layout_in(tmp_path)
    Path(layout.releases, "20260101T000000Z-a").mkdir(parents=True)
    Path(layout.releases, "20260101T000000Z-a", "REVISION").write_text("x")

    result = run(shell, f"set -f; {state_script(layout)}; case $- in *f*) echo NOGLOB;; esac")

    state = parse_state(result.stdout.decode(), layout)
    assert state.complete == frozenset({"20260101T000000Z-a"})
    assert result.stdout.decode().endswith("NOGLOB\n")  # put back as it was


@pytest.mark.parametrize("shell", SHELLS)
def test_a_log_ending_in_a_nul_gets_its_line_ended_first(tmp_path: Path, shell: str) -> None:
    layout = layout_in(tmp_path)
    Path(layout.log).write_bytes(line("20260101T000000Z-a").encode() + b"\n\0\0")
    new = entry("20261128T120000Z-abc")
    command = record_command(layout, new)
    assert isinstance(command.stdin, bytes)

    assert run(shell, command.line, command.stdin).returncode == 0
    assert Path(layout.log).read_bytes().endswith(b"\0\0\n" + new.as_json().encode() + b"\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_the_space_check_splits_df_on_blanks_whatever_ifs_is(tmp_path: Path, shell: str) -> None:
    assert run(shell, f"IFS=:; {space_check(str(tmp_path), 1024)}").returncode == 0


@pytest.mark.parametrize(
    ("shell", "option"),
    [(sh, "") for sh in SHELLS]
    + [(sh, "set -f") for sh in SHELLS]
    + [("bash", "shopt -s failglob")],
)
def test_python_environments_no_release_links_to_are_pruned_whatever_the_options(
    tmp_path: Path, shell: str, option: str
) -> None:
    layout = layout_in(tmp_path)
    envs = Path(python_dir(layout))
    for key in ("used", "unused"):
        (envs / key / "venv").mkdir(parents=True)
    release = Path(layout.releases, "20260101T000000Z-a")
    release.mkdir(parents=True)
    (release / ".venv").symlink_to("../../.deploylib/python/used/venv")
    Path(layout.releases, "20260101T000000Z-b").mkdir()  # without an environment

    script = "rc=0; " + "; ".join(prune_lines(layout)) + "; echo rc=$rc"
    result = run(shell, f"{option + '; ' if option else ''}{script}")

    assert result.stdout.decode() == "rc=0\n", result.stderr
    assert sorted(p.name for p in envs.iterdir()) == ["used"]


@pytest.mark.parametrize("shell", SHELLS)
def test_releases_are_removed_under_set_e_without_a_current(tmp_path: Path, shell: str) -> None:
    layout = layout_in(tmp_path)
    gone = Path(layout.releases, "20260101T000000Z-a")
    gone.mkdir(parents=True)
    command = remove_release_command(layout, ["20260101T000000Z-a"])
    result = run(shell, f"set -eu; {command.line}")
    assert result.returncode == 0, result.stderr
    assert not gone.exists()


DF_HEADER = "Filesystem     1024-blocks    Used Available Capacity Mounted on\n"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("row", "available"),
    [
        ("/dev/sda1 1000 400 600 40% /", "600"),
        ("my fs 1 2 3 1000 400 600 40% /mnt/a b", "600"),  # numbers in the name
        ("server:/export with space\t2000 1000 999 51% /mnt/x 1 2 3 4%", "999"),
        ("1234 1000 500 500 50% /m", "500"),  # a name that is a number
        ("* [a] 10 5 5 50% /*", "5"),  # a name that would be a pattern
        ("proc 0 0 0 - /proc", "0"),
        ("no numbers here at all", ""),
    ],
)
@pytest.mark.parametrize(
    "read",
    [available_kb, lambda path: f'{set_available_kb("avail", path)}; echo "$avail"'],
    ids=["printed", "set"],
)
def test_the_free_space_is_read_whatever_blanks_the_name_and_mount_point_hold(
    tmp_path: Path, shell: str, row: str, available: str, read: Callable[[str], str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "df"
    fake.write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(DF_HEADER + row)}\n")
    fake.chmod(0o755)
    script = f"PATH={shlex.quote(str(bin_dir))}:$PATH; IFS=:; set -f; {read('/x')}"
    done = run(shell, script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == available + "\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_space_check_on_a_file_system_whose_name_and_mount_point_hold_spaces(
    tmp_path: Path, shell: str
) -> None:
    point = tmp_path / "mount point 1 2 3 4%"
    point.mkdir()
    name = "deploylib test 100 200 300"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", name, str(point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"no tmpfs mount here: {mounted.stderr.decode().strip()}")
    try:
        directory = point / "srv"
        directory.mkdir()
        assert run(shell, space_check(str(directory), 1 << 20)).returncode == 0
        refused = run(shell, space_check(str(directory), 9 << 20))
        assert refused.returncode == 1
        assert refused.stderr.decode().strip().endswith("this release needs 10 MiB, 8 MiB are free")
    finally:
        subprocess.run(["umount", str(point)], check=True)
