"""Specifies deploylib.placeholders: rendering and checking {placeholders} in commands and text."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


HOSTILE = "/srv/a$(touch x)`touch y`\"q\\'s' \\$HOME\nz\\"


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize(
    "template",
    [
        "printf '%s' {host}",
        "printf '%s' \"{host}\"",
        "printf '%s' \"at {host}.\"",
        "printf '%s' 'at {host}.'",
        "printf '%s' \"$(printf '%s' {host})\"",
        "printf '%s' \"$(printf '%s' \"{host}\")\"",
        "cat <<EOF >/dev/null\nhello\nEOF\nprintf '%s' {host}",
        "x=$((1<<2))\nprintf '%s' {host}",
        "printf '%s' \"${X:-\"a\"}\" >/dev/null; printf '%s' {host}",
        "printf '%s' {host} `#{host}`",
        "printf '%s' {host} #{host}",
        "printf '%s' \"`printf '%s' {host}`\"",
        "printf '%s' \"`printf '%s' \"{host}\"`\"",
        "# it's a comment, not a quote\nprintf '%s' {host}",
        "printf '%s' {host} # and {host} in a comment",
        "printf '%s' \"$(case x in x) printf '%s' {host};; esac)\"",
        "printf '%s' \"$(case x in (x) printf '%s' \"{host}\";; esac)\"",
        "printf '%s' \"$( (printf '%s' {host}) )\"",
    ],
)
def test_a_hostile_value_stays_itself_in_every_kind_of_quoting(
    template: str, shell: str, tmp_path: object
) -> None:
    """Outside quotes, inside double or single quotes, in a command substitution (either
    kind) and in ``${...}``: the value arrives as it is and nothing in it runs."""
    line = render_shell(template, {"host": HOSTILE})
    out = subprocess.run([shell, "-c", line], capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    expected = {"at": f"at {HOSTILE}."}.get(template.split("{host}")[0][-3:-1], HOSTILE)
    assert out.stdout == expected
    assert not list(tmp_path.iterdir())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "template",
    [
        "cat <<EOF\n# managed for {host}\nEOF",
        "cat <<-'EOF'\n\t{host}\n\tEOF",
        "printf '%s' \"\\{host}\"",
        "printf '%s' \\{host}",
        "echo $(( {host} + 1 ))",
        "printf '%s' \"${UNSET_VAR:-{host}}\"",
        'echo ${X:- #"{host}"}',
        "echo `echo \\`echo {host}\\``",
    ],
)
def test_where_a_hostile_value_cannot_be_quoted_it_is_an_error(template: str) -> None:
    """A here-document's body, right after a backslash, arithmetic, ``${...}`` and nested
    backquotes: a value that is not plain there is refused, never handed to the shell."""
    with pytest.raises(ConfigError):
        render_shell(template, {"host": HOSTILE})


@pytest.mark.parametrize(
    "template", ["printf '%s' $'{host}'", "cat <<< x >/dev/null\nprintf '%s' {host}"]
)
def test_bash_s_own_quoting_and_here_strings_keep_a_value_itself(
    template: str, tmp_path: Path
) -> None:
    line = render_shell(template, {"host": HOSTILE})
    out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == HOSTILE and not list(tmp_path.iterdir())


def test_a_plain_value_is_welcome_where_a_hostile_one_is_refused() -> None:
    assert render_shell("echo $(( {port} + 1 ))", {"port": "8001"}) == "echo $(( 8001 + 1 ))"
    assert render_shell('echo "${X:-{host}}"', {"host": "web-1.example"}) == (
        'echo "${X:-web-1.example}"'
    )


def test_a_placeholder_in_a_here_documents_body_is_an_error() -> None:
    with pytest.raises(ConfigError, match="here-document"):
        render_shell("cat <<EOF\n{host}\nEOF", {"host": "web1"})
    # on the line that starts it, it is an ordinary word
    assert render_shell("cat <<EOF > {host}\nhello\nEOF", {"host": "a b"}) == (
        "cat <<EOF > 'a b'\nhello\nEOF"
    )


def test_unknown_placeholder_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"\{relase\}"):
        validate("echo {relase}", "run")
    validate("echo {release} ${VAR} {{literal}} {print $1}", "run")


def test_render_text_fills_variables_with_defaults() -> None:
    assert (
        render_text("http://{host}:${PORT:-80}/${NONE:-x}", VALUES, {"PORT": "8000"})
        == "http://web1:8000/x"
    )
