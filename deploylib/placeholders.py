"""``{placeholder}`` filling for step arguments.

Only the names in ``PLACEHOLDERS`` are placeholders. ``{{`` and ``}}`` stand for literal braces,
``${VAR}`` is left to the shell, and anything else in braces that is not a plain lowercase name
(``awk '{print $1}'``, a PromQL label matcher ``{status=~"5.."}``) is left as written. An
unknown plain name such as ``{relase}`` is an error found when the pipeline is validated,
before any target is touched.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping

from deploylib import interpolation
from deploylib.errors import ConfigError

PLACEHOLDERS = frozenset(
    {
        "app",
        "env",
        "release",
        "revision",
        "deploy_to",
        "release_path",
        "current_path",
        "shared_path",
        "host",
        "host_address",
        "artifact",
        "port",
        "slot",
        "image",
    }
)

# ``{name}`` (values of one step on one target, shell-quoted) is not ``${VAR}`` (variables,
# filled by ``interpolation``): the ``(?<!\$)`` leaves the latter alone
_FIELD_RE = re.compile(r"\{\{|\}\}|(?<!\$)\{([a-z_][a-z0-9_]*)\}")


def names_in(template: str) -> set[str]:
    return {m.group(1) for m in _FIELD_RE.finditer(template) if m.group(1)}


def validate(template: str, where: str, *, allowed: frozenset[str] = PLACEHOLDERS) -> None:
    unknown = sorted(names_in(template) - allowed)
    if unknown:
        known = " ".join("{" + n + "}" for n in sorted(allowed))
        raise ConfigError(
            f"unknown placeholder {{{unknown[0]}}} (known: {known}; write {{{{ and }}}} "
            "for literal braces)",
            key=where,
        )


def render_shell(template: str, values: Mapping[str, str]) -> str:
    """Fill placeholders, each value shell-quoted: safe whatever the value holds."""
    return _render(template, values, shlex.quote)


def render_text(
    template: str, values: Mapping[str, str], variables: Mapping[str, str] | None
) -> str:
    """Fill placeholders and ``${VAR}`` for text that is not a shell command (URLs, needles);
    ``variables`` None fills placeholders only (``${VAR}`` stays as written)."""
    filled = _render(template, values, lambda v: v)
    if variables is None:
        return filled
    # an unset ${VAR} is empty text here, as in a shell
    return interpolation.expand(filled, variables)


def _render(template: str, values: Mapping[str, str], quote: Callable[[str], str]) -> str:
    def fill(match: re.Match[str]) -> str:
        matched = match.group(0)
        if matched == "{{":
            return "{"
        if matched == "}}":
            return "}"
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"placeholder {{{name}}} has no value here", key=name)
        return quote(values[name])

    return _FIELD_RE.sub(fill, template)
