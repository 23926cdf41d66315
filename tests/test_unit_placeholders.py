"""Specifies deploylib.placeholders: rendering and checking {placeholders} in commands and text."""

from __future__ import annotations

import subprocess

import pytest

from deploylib.errors import ConfigError
from deploylib.placeholders import render_shell, render_text, validate

VALUES = {"release": "20260101T000000Z-abc", "deploy_to": "/srv/my app", "host": "web1"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {release}", "echo 20260101T000000Z-abc"),
        ("ls {deploy_to}", "ls '/srv/my app'"),
        ("awk '{print $1}' {host}", "awk '{print $1}' web1"),
        ("echo ${HOME} {{release}}", "echo ${HOME} {release}"),
        ("echo {HOST}", "echo {HOST}"),
    ],
)
def test_render_shell(template: str, expected: str) -> None:
    assert render_shell(template, VALUES) == expected


@pytest.mark.parametrize(
    "hostile", ["$(touch x)", "`touch x`", "a; touch x", "it's", "a\ntouch x", "../.."]
)
def test_hostile_values_stay_one_shell_word(hostile: str, tmp_path: object) -> None:
    line = render_shell("printf '%s' {host}", {"host": hostile})
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, cwd=str(tmp_path))
    assert out.stdout == hostile
    assert not (tmp_path / "x").exists()  # type: ignore[operator]


def test_unknown_placeholder_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"\{relase\}"):
        validate("echo {relase}", "run")
    validate("echo {release} ${VAR} {{literal}} {print $1}", "run")


def test_render_text_fills_variables_with_defaults() -> None:
    assert (
        render_text("http://{host}:${PORT:-80}/${NONE:-x}", VALUES, {"PORT": "8000"})
        == "http://web1:8000/x"
    )
