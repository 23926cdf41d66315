"""Attacks on the one-command push (remote/release.push_command) with a real /bin/sh."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command
from deploylib.digests import file_digest
from deploylib.remote.layout import Layout
from deploylib.remote.release import env_file_text, push_command
from deploylib.secrets import Secret
from tests.test_push_stream import R, make_artifact

SECRET = "TOPSECRET-value-123"


def _command(
    layout: Layout, artifact: Path, variables: Mapping[str, str | Secret], **kw: Any
) -> Command:
    return push_command(
        layout,
        R,
        "abc1234",
        ["log"],
        kw.pop("shared_files", []),
        artifact=str(artifact),
        digest=kw.pop("digest", "0" * 64) if artifact.is_fifo() else file_digest(artifact),
        variables=variables,
        **kw,
    )


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_transfer_cut_off_mid_stream_leaves_no_env_file_with_secrets(
    tmp_path: Path, signum: int
) -> None:
    """The connection drops (sshd sends SIGHUP) or the step times out (the backend sends
    SIGTERM to the group) while the artifact streams: nothing unpacks, and neither the env
    file with the secret nor the .part stays in uploads (the push's EXIT trap)."""
    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    command = _command(layout, artifact, {"API_TOKEN": Secret(SECRET)})
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command.full_line], stdin=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdin is not None
    proc.stdin.write(command.stdin_bytes() or b"")
    proc.stdin.write(artifact.read_bytes()[:1000])  # part of the artifact, then the drop
    proc.stdin.flush()
    part = Path(layout.upload_path(R) + ".part")
    deadline = time.monotonic() + 10
    while not part.exists() and time.monotonic() < deadline:  # the artifact is arriving
        time.sleep(0.02)
    assert part.exists()
    os.killpg(proc.pid, signum)
    proc.wait(timeout=10)
    assert not Path(layout.release_path(R)).exists()
    left = {p.name: p.read_bytes() for p in Path(layout.uploads).iterdir()}
    assert not any(SECRET.encode() in data for data in left.values()), sorted(left)
    assert left == {}


def test_a_push_failing_after_the_check_leaves_no_env_file_with_secrets(tmp_path: Path) -> None:
    """The artifact arrived whole, but the release cannot be completed (a shared file
    missing): the command stops at the first failing line, and its EXIT trap removes the
    received env file with its secret."""
    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    command = _command(
        layout, artifact, {"API_TOKEN": Secret(SECRET)}, shared_files=["config/missing.yml"]
    )
    result = LocalBackend(default_timeout=30).run(command)
    assert not result.ok
    left = {p.name: p.read_bytes() for p in Path(layout.uploads).iterdir()}
    assert not any(SECRET.encode() in data for data in left.values()), sorted(left)


def test_a_non_utf8_env_value_is_refused_cleanly_or_sent_byte_exact(tmp_path: Path) -> None:
    """A value read from a non-UTF-8 environment (os.environ's surrogateescape str) is sent
    as the bytes it was read from."""
    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    value = b"caf\xe9".decode("utf-8", "surrogateescape")
    for variables in ({"PLAIN": value}, {"SEC": Secret(value)}):
        try:
            command = _command(layout, artifact, variables)
        except ValueError as exc:  # a clear refusal would be fine
            assert not isinstance(exc, UnicodeError), exc
            continue
        result = LocalBackend(default_timeout=30).run(command)
        assert result.ok, result


HOSTILE_VALUES = {
    "A": "x\ny\r\nz",
    "B": "$(touch /tmp/pwned-push) `touch /tmp/pwned-push` ${HOME}",
    "C": "'\"\\",
    "D": "ends with backslash\\",
    "E": "",
    "F": "\x00-less but \x7f and \u2028 and \x1c",
    "G": "#comment ?",
}


def test_hostile_env_values_arrive_byte_exact(tmp_path: Path) -> None:
    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    layout = Layout(str(tmp_path / "srv"))
    for secret in (False, True):
        variables = {k: (Secret(v) if secret else v) for k, v in HOSTILE_VALUES.items()}
        command = _command(layout, artifact, variables)
        assert "pwned" not in command.full_line
        result = LocalBackend(default_timeout=30).run(command)
        assert result.ok, result
        env = Path(layout.release_path(R)) / ".env"
        assert env.read_bytes() == env_file_text(variables).encode()
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        assert list(Path(layout.uploads).iterdir()) == []
        assert not Path("/tmp/pwned-push").exists()
        import shutil

        shutil.rmtree(layout.release_path(R))


def test_a_push_timed_out_by_the_backend_leaves_no_env_file(tmp_path: Path) -> None:
    """The same through LocalBackend: the artifact stalls (a FIFO that gets 1000 bytes and
    then nothing), the command's timeout kills it; uploads keep nothing of it."""
    import threading

    artifact = tmp_path / "app.tar.gz"
    make_artifact(artifact)
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    layout = Layout(str(tmp_path / "srv"))
    command = _command(layout, fifo, {"API_TOKEN": Secret(SECRET)})
    command = replace(command, timeout=2)

    def writer() -> None:
        with open(fifo, "wb") as out:
            out.write(artifact.read_bytes()[:1000])
            out.flush()
            time.sleep(5)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    result = LocalBackend().run(command)
    assert result.timed_out
    left = {p.name: p.read_bytes() for p in Path(layout.uploads).iterdir()}
    assert not any(SECRET.encode() in data for data in left.values()), sorted(left)
