"""The env file deploylib writes reads back exactly with python-dotenv, whatever the values hold."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylib import Secret
from deploylib.envfile import EMPTY, HEADER, printf_escaped, render, value_token

# env values are C strings: no NUL; a file is UTF-8 text: no lone surrogates
CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
# pieces that matter to dotenv, so that hypothesis meets them often, glued to arbitrary text
TRICKY = st.sampled_from(
    ["\\", '"', "'", "$", "{", "}", "${", ":-", "#", " #", "\n", "\r", "\r\n", " ", "\t", "=",
     "\\n", '\\"', "\x85", "\u2028", "é", "export "]
)  # fmt: skip
VALUES = st.lists(st.one_of(st.text(CHARACTERS, max_size=8), TRICKY), max_size=10).map("".join)


def read_back(tmp_path: Path, variables: dict[str, str], *, interpolate: bool) -> dict[str, str]:
    path = tmp_path / "x.env"
    path.write_text(render(variables), encoding="utf-8")
    return {k: v or "" for k, v in dotenv_values(path, interpolate=interpolate).items()}


def needs_interpolation(value: str) -> bool:
    """Values that only an interpolating reader reads back exactly (see envfile's docstring)."""
    return "${" in value or value_token(value).endswith(EMPTY + '"')


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(VALUES, min_size=1, max_size=6))
def test_every_value_reads_back_exactly_with_python_dotenv(
    tmp_path: Path, values: list[str]
) -> None:
    variables = {f"VAR_{i}": value for i, value in enumerate(values)}

    assert read_back(tmp_path, variables, interpolate=True) == variables
    plain = read_back(tmp_path, variables, interpolate=False)
    for name, value in variables.items():
        if not needs_interpolation(value):
            assert plain[name] == value


@pytest.mark.parametrize(
    "value",
    [
        "pa${ss}word",
        "${HOME}",
        "${A:-b}",
        "$${x}",
        "a${",
        "}${{",
        'quote"and\\backslash',
        "ends with a backslash\\",
        "two lines\\\nand a backslash\\",
        'C:\\new\\"dir"\\',
        "carriage\rreturn\r\n",
        "# not a comment",
        "value # with a hash",
        "  leading and trailing  ",
        "-----BEGIN KEY-----\nabc/+=\n-----END KEY-----\n",
        "",
        "ünïcødé 漢字 🙂",
    ],
)
def test_values_dotenv_would_change_are_written_to_read_back_unchanged(
    tmp_path: Path, value: str
) -> None:
    assert read_back(tmp_path, {"V": value, "AFTER": "x"}, interpolate=True) == {
        "V": value,
        "AFTER": "x",
    }


def test_a_value_without_dollar_brace_reads_back_without_interpolation_too(
    tmp_path: Path,
) -> None:
    values = {"A": 'q"\\\n', "B": "ends\\", "C": "$HOME and $", "D": "a\rb"}
    assert read_back(tmp_path, values, interpolate=False) == values


def test_the_file_says_who_writes_it_and_secrets_are_written_revealed(tmp_path: Path) -> None:
    text = render({"TOKEN": Secret("s3cret value"), "PORT": "8000"})
    assert text.startswith(HEADER) and HEADER.startswith("#") and "deploylib" in HEADER
    assert "every deploy" in HEADER
    assert text.splitlines()[1:] == ['TOKEN="s3cret value"', 'PORT="8000"']


@pytest.mark.parametrize("name", ["1X", "A-B", "A B", "A\n", "", "DEPLOYLIB_NEVER_SET"])
def test_names_that_are_not_variable_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        render({name: "x"})


@settings(max_examples=60, deadline=None)
@given(value=st.text(CHARACTERS, max_size=40) | TRICKY)
def test_printf_escaped_prints_the_value_back_through_a_real_shell(value: str) -> None:
    word = printf_escaped(value)
    assert "\n" not in word
    printed = subprocess.run(
        ["sh", "-c", f"printf '%bx' {word}"], capture_output=True, check=True
    ).stdout.decode("utf-8", "surrogateescape")
    assert printed == value + "x"
