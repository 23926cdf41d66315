"""``${VAR}`` references: the one place deploylib fills them in its own text.

A reference is ``${NAME}`` or ``${NAME:-default}``; the default (all up to the first ``}``,
taken as written) stands in when NAME is unset or empty. Two callers:

* deploy.toml's string values (``config.variables.interpolate``): ``$$`` is a literal ``$``, a
  secret's name is refused, and an unset name without a default is an error;
* the text of checks (``placeholders.render_text``: URLs, ``contains=``): an unset name is
  empty text, and ``$$`` has no meaning.

Not here: env files are expanded by python-dotenv (as a python-dotenv reader of the file, such
as the app, expands them), ``{name}`` step placeholders are ``placeholders``', and ``$VAR`` or
``${x##*/}`` in a command is the shell's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

REFERENCE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
#: a reference, or ``$$`` for a literal ``$`` (the groups are the reference's)
REFERENCE_OR_ESCAPE_RE = re.compile(r"\$\$|" + REFERENCE_RE.pattern)


def _empty(name: str) -> str:
    return ""


def expand(
    text: str,
    variables: Mapping[str, str],
    *,
    unset: Callable[[str], str] = _empty,
    check: Callable[[str], None] | None = None,
    dollar_escape: bool = False,
) -> str:
    """``text`` with every ``${NAME}`` and ``${NAME:-default}`` filled from ``variables``.

    ``check`` sees each name referenced, in order, before it is filled, and may raise.
    ``unset`` gives the text for a name that is not in ``variables`` and has no default (or
    raises). With ``dollar_escape``, ``$$`` is written as ``$`` and starts no reference."""

    def fill(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if check is not None:
            check(name)
        value = variables.get(name)
        if value:
            return value
        if default is not None:
            return default
        return "" if value is not None else unset(name)

    pattern = REFERENCE_OR_ESCAPE_RE if dollar_escape else REFERENCE_RE
    return pattern.sub(fill, text)
