"""Specifies deploylib.backends.ssh: environment lines sent to a remote shell on stdin."""

from __future__ import annotations

import subprocess

import pytest

from deploylib.backends.ssh import ENV_PRELUDE, env_line


@pytest.mark.parametrize(
    "value", ["plain", "it's $(touch x) `y`", "two\nlines\n", "back\\slash\\n"]
)
def test_ssh_env_lines_round_trip_through_sh(value: str, tmp_path: object) -> None:
    script = ENV_PRELUDE + 'printf %s "$V"'
    stdin = env_line("V", value) + "\n\n"
    out = subprocess.run(
        ["sh", "-c", script], input=stdin, capture_output=True, text=True, cwd=str(tmp_path)
    )
    assert out.stdout == value
    assert not (tmp_path / "x").exists()  # type: ignore[operator]
    with pytest.raises(ValueError):
        env_line("X; touch x", "v")
