"""The env file deploylib writes to every target, and the escaping of env values sent over SSH.

``render`` makes the text of ``shared/.env``. It round-trips with **python-dotenv** (1.x):

* ``dotenv_values(path)`` / ``load_dotenv(path)`` with their defaults (``interpolate=True``) read
  back every value exactly, whatever it holds: quotes, backslashes, newlines, ``\\r``, ``#``,
  non-ASCII text and ``${...}``;
* with ``interpolate=False`` every value reads back exactly too, except values holding ``${``
  (written with the guard below) and values that end in a backslash and cannot be written
  unquoted (they hold a newline or ``\\r``, start with a quote or a space, or hold a space before
  ``#``). python-dotenv's quoted-value pattern takes a backslash before the closing quote as an
  escaped quote, so such a value ends in an empty guard, ``${DEPLOYLIB_NEVER_SET:-}``, which only
  an interpolating reader removes.

No other reader is promised anything: a shell's ``source`` or ``set -a; .`` expands ``$`` inside
double quotes, and systemd's ``EnvironmentFile`` knows no ``\\r`` escape.

How values are written:

* double-quoted, with ``\\``, ``"``, newline and ``\\r`` escaped (text-mode reading would turn a raw
  ``\\r`` into a newline); every other character is written as itself, in UTF-8;
* a value ending in a backslash is written unquoted when python-dotenv reads it back unquoted;
* python-dotenv expands ``${NAME}`` and ``${NAME:-default}`` in every value, quoted or not, and
  has no escape for ``$``. It expands once, and ``${NAME:-default}`` of a NAME that is never set
  is the default, so every ``${`` of a value is written ``${DEPLOYLIB_NEVER_SET:-$}{``.
  ``render`` refuses a variable of that name.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploylib.secrets import Secret

HEADER = "# Written by deploylib on every deploy: edits here are replaced by the next deploy.\n"

# ``${`` here is escaped for python-dotenv's reader, never expanded (that is ``interpolation``)
#: a variable that no env file deploylib writes can set, so ``${NEVER_SET:-x}`` always reads ``x``
NEVER_SET = "DEPLOYLIB_NEVER_SET"
LITERAL_DOLLAR_BRACE = "${" + NEVER_SET + ":-$}{"
EMPTY = "${" + NEVER_SET + ":-}"

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what python-dotenv would not read back as written in an unquoted value
_UNQUOTED_UNSAFE = re.compile(r"[\r\n]|\s#|\s\Z|\A[\s'\"]|\A\Z")
_DOUBLE_QUOTE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def render(variables: Mapping[str, str | Secret]) -> str:
    """The text of a dotenv file with one ``NAME=value`` line per variable, in order.

    Each value reads back exactly with python-dotenv (see the module's docstring for which
    reading modes). Raises ``ValueError`` for a name that is not a shell variable name, or that
    is ``DEPLOYLIB_NEVER_SET``."""
    lines = [HEADER]
    for name, value in variables.items():
        if not NAME_RE.fullmatch(name) or name == NEVER_SET:
            raise ValueError(f"not a variable name deploylib can write: {name!r}")
        lines.append(f"{name}={value_token(_reveal(value))}\n")
    return "".join(lines)


def value_token(value: str) -> str:
    """How ``render`` writes ``value``: the text to the right of ``NAME=``."""
    text = value.replace("${", LITERAL_DOLLAR_BRACE)
    if not text.endswith("\\"):
        return f'"{text.translate(_DOUBLE_QUOTE_ESCAPES)}"'
    if not _UNQUOTED_UNSAFE.search(text):
        return text
    return f'"{text.translate(_DOUBLE_QUOTE_ESCAPES)}{EMPTY}"'


def printf_escaped(value: str) -> str:
    """``value`` as one shell word for ``printf '%b'``: backslashes doubled, newlines as ``\\n``.

    ``printf '%b' WORD`` prints ``value`` back exactly; the word holds no newline, so it fits on
    the one line of an ``export`` statement."""
    return shlex.quote(value.replace("\\", "\\\\").replace("\n", "\\n"))


def _reveal(value: str | Secret) -> str:
    return value if isinstance(value, str) else value.reveal()
