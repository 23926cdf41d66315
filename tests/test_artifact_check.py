"""Specifies the build's artifact check (``remote.release.artifact_check``): a file on this
machine, there, regular and not empty, looked at in this process, and shown as the command it
stands for."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploylib.backends.local import LocalBackend
from deploylib.commands import Command
from deploylib.remote.release import artifact_check


@pytest.mark.parametrize(
    ("kind", "ok"),
    [
        ("a file with bytes", True),
        ("a link to one", True),
        ("an empty file", False),
        ("a directory", False),
        ("nothing", False),
        ("a dangling link", False),
    ],
)
def test_only_a_file_with_something_in_it_passes(tmp_path: Path, kind: str, ok: bool) -> None:
    path = tmp_path / "app it's $(here).tar.gz"
    if kind == "a file with bytes":
        path.write_bytes(b"\x1f\x8b")
    elif kind == "a link to one":
        (tmp_path / "real").write_bytes(b"x")
        path.symlink_to(tmp_path / "real")
    elif kind == "an empty file":
        path.write_bytes(b"")
    elif kind == "a directory":
        path.mkdir()
    elif kind == "a dangling link":
        path.symlink_to(tmp_path / "gone")

    check = artifact_check(str(path))
    result = LocalBackend(default_timeout=10).execute(check)

    assert result.ok is ok, result.stderr
    assert check.line == Command.of("test", "-s", str(path)).line  # as the command was shown
    if not ok:
        assert str(path) in result.stderr
