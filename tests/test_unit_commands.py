"""Specifies deploylib.commands: the shell line a Command runs."""

from __future__ import annotations

from deploylib import Command


def test_command_line_with_cwd() -> None:
    assert Command("make", cwd="/srv/my app").line == "cd '/srv/my app' && make"
    assert Command("a\nb", cwd="/x").line == "cd /x && {\na\nb\n}"
    assert Command.of("touch", "a b").line == "touch 'a b'"
