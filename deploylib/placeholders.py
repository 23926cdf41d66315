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
from dataclasses import dataclass

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
    """Fill placeholders in a shell command, each value quoted for where it stands: safe
    whatever the value holds. Outside quotes it is shell-quoted (``'...'``); inside double
    quotes ``$``, backquote, ``"`` and backslash are escaped; inside single quotes each ``'``
    becomes ``'\\''``. Command substitutions and ``${...}`` are followed, and comments skipped,
    to know which. A here-document's body takes no placeholder (its quoting is its
    delimiter's): one there is an error."""
    quoting = _ShellQuoting(template)

    def quote(value: str, start: int) -> str:
        return quoting.quote(value, start)

    return _render_at(template, values, quote)


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
    return _render_at(template, values, lambda value, _start: quote(value))


def _render_at(template: str, values: Mapping[str, str], quote: Callable[[str, int], str]) -> str:
    def fill(match: re.Match[str]) -> str:
        matched = match.group(0)
        if matched == "{{":
            return "{"
        if matched == "}}":
            return "}"
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"placeholder {{{name}}} has no value here", key=name)
        return quote(values[name], match.start())

    return _FIELD_RE.sub(fill, template)


class _ShellQuoting:
    """Which quoting each position of a shell template is in, read once: outside quotes,
    inside ``"..."``, inside ``'...'``, or in a here-document's body. ``$(...)`` and
    backquotes open a command of their own (outside quotes again, whatever surrounds them);
    ``${...}`` keeps the quoting around it; ``#`` at a word's start comments to the line's end
    (a quote there is no quote; a placeholder there gets its value on one line)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.kinds: dict[int, str] = {}
        #: placeholders inside backquotes, whose text the shell unescapes once more
        self.backquoted: set[int] = set()
        self._read()

    def quote(self, value: str, start: int) -> str:
        quoted = self._quote(value, start)
        if start in self.backquoted:
            return "".join("\\" + c if c in "$`\\" else c for c in quoted)
        return quoted

    def _quote(self, value: str, start: int) -> str:
        kind = self.kinds.get(start, "plain")
        if kind == "double":
            return "".join("\\" + c if c in '$`"\\' else c for c in value)
        if kind == "single":
            return value.replace("'", "'\\''")
        if kind == "comment":  # a line break would end the comment: the rest would run
            return shlex.quote(" ".join(value.splitlines()))
        if kind == "heredoc":
            raise ConfigError(
                "a placeholder in a here-document's body cannot be quoted there: "
                "set a variable to it before the here-document and use that",
                key=self.template[start:].split("}", 1)[0] + "}",
            )
        return shlex.quote(value)

    def _read(self) -> None:
        text = self.template
        frames = [_Frame("plain", "")]  # the contexts open, innermost last
        heredoc = pending = False
        i = 0
        while i < len(text):
            frame = frames[-1]
            placeholder = _FIELD_RE.match(text, i)
            if placeholder and placeholder.group(1):
                self.kinds[i] = "heredoc" if heredoc else frame.kind
                if any(f.closer == "`" for f in frames):
                    self.backquoted.add(i)
                i = placeholder.end()
                continue
            c = text[i]
            ahead = text[i + 1] if i + 1 < len(text) else ""
            if placeholder:  # {{ or }}: one literal brace to the shell
                i = placeholder.end() - 1
            plain = frame.kind == "plain"
            if frame.kind == "single":
                if c == "'":
                    frames.pop()
            elif c == "\\":
                i += 1
            elif c == "'" and plain:
                frames.append(_Frame("single", "'"))
            elif c == '"':
                if frame.kind == "double":
                    frames.pop()
                else:
                    frames.append(_Frame("double", '"'))
            elif c == "`":
                if frame.closer == "`":
                    frames.pop()
                else:
                    frames.append(_Frame("plain", "`"))
            elif c == "$" and ahead == "(":
                frames.append(_Frame("plain", ")", depth=1))
                i += 1
            elif c == "$" and ahead == "{":
                frames.append(_Frame(frame.kind, "}"))
                i += 1
            elif c == "}" and frame.closer == "}":
                frames.pop()
            elif plain and _word_at(text, i, "case"):
                frame.cases += 1
                i += 3
            elif plain and _word_at(text, i, "esac") and frame.cases:
                frame.cases -= 1
                i += 3
            elif c in "()" and frame.cases:
                pass  # a pattern's parenthesis, or a subshell's inside a case: neither ends $(
            elif c == "(" and frame.closer == ")" and plain:
                frame.depth += 1
            elif c == ")" and frame.closer == ")" and plain:
                frame.depth -= 1
                if frame.depth <= 0:
                    frames.pop()
            elif plain and c == "#" and (i == 0 or text[i - 1] in " \t\n;&|()"):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                for inside in _FIELD_RE.finditer(text, i, end):
                    if inside.group(1):
                        self.kinds[inside.start()] = "comment"
                i = end
                continue
            elif plain and c == "<" and ahead == "<":
                pending = True
                i += 1
            elif c == "\n" and pending:
                heredoc = True
            i += 1


@dataclass
class _Frame:
    """One open context of a shell template: its quoting (``plain``, ``double``, ``single``),
    what closes it, the parentheses open in it (``$(`` counts them) and the ``case`` statements
    open in it (their patterns' parentheses match none)."""

    kind: str
    closer: str
    depth: int = 0
    cases: int = 0


def _word_at(text: str, i: int, word: str) -> bool:
    """``word`` stands at ``i`` as a shell word of its own (a reserved word's place)."""
    end = i + len(word)
    before = text[i - 1] if i else " "
    after = text[end] if end < len(text) else " "
    return text.startswith(word, i) and before in " \t\n;&|(`" and after in " \t\n;&|)"
