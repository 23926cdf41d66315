"""Variables sent to a shell on its standard input, never on its command line (``ps``).

``ENV_PRELUDE`` reads ``export NAME=...`` lines from stdin up to an empty line, then the command
runs; the rest of stdin is the command's own. The SSH backend sends every command's variables
this way, and so does a command run as another user (``sudo``), whose own environment sudo
resets."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from deploylib.envfile import printf_escaped
from deploylib.secrets import Secret, reveal

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the names ``ENV_PRELUDE`` reads with: a variable may not have one of them
RESERVED_PREFIX = "__dl"

# `read` takes one byte at a time from a pipe, so it never swallows what the command should read
ENV_PRELUDE = 'while IFS= read -r __dl && [ -n "$__dl" ]; do eval "$__dl"; done; '


def env_line(name: str, value: str) -> str:
    """One line of shell that exports ``name``; values with newlines are escaped for printf."""
    if not ENV_NAME.fullmatch(name):
        raise ValueError(f"not an environment variable name: {name!r}")
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"{name!r}: names starting with {RESERVED_PREFIX} are deploylib's own")
    if "\n" not in value:
        return f"export {name}={shlex.quote(value)}"
    # the trailing x survives command substitution's trimming of final newlines
    return f'__dlv="$(printf \'%bx\' {printf_escaped(value)})"; export {name}="${{__dlv%x}}"'


def env_block(env: Mapping[str, str | Secret]) -> str:
    """The lines ``ENV_PRELUDE`` reads for ``env``, ending in the empty line."""
    return "".join(env_line(k, reveal(v)) + "\n" for k, v in env.items()) + "\n"
