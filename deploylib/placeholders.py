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
    inside ``"..."``, ``'...'`` or ``$'...'``, in arithmetic (``$((...))``), in a comment or in
    a here-document's body. ``$(...)`` and backquotes open a command of their own (outside
    quotes again, whatever surrounds them); ``${...}`` keeps the quoting around it (a ``"``
    inside it opens a quote of its own); a ``case`` pattern's parenthesis closes nothing;
    ``#`` at a word's start comments to the line's end (a quote there is no quote).

    Where a value cannot be quoted (a here-document's body, right after a backslash) or must be
    a number (arithmetic), a value that is not is an error, never text the shell would read."""

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
        if kind == "ansi":  # $'...': closed, the value quoted, opened again
            return "'" + shlex.quote(value) + "$'"
        if kind == "comment":  # shown, never run: only its plain characters, on one line
            return _UNPLAIN.sub("_", value)
        if kind == "arith" and re.fullmatch(r"-?[0-9]+", value):
            return value
        if kind == "plain-only" and _PLAIN_VALUE.fullmatch(value):
            return value
        if kind in _UNQUOTABLE:
            raise ConfigError(_UNQUOTABLE[kind], key=self.template[start:].split("}", 1)[0] + "}")
        return shlex.quote(value)

    def _read(self) -> None:
        text = self.template
        frames = [_Frame("plain", "")]  # the contexts open, innermost last
        heredocs: list[tuple[str, bool]] = []  # delimiters whose bodies start at the next line
        i = 0
        while i < len(text):
            frame = frames[-1]
            placeholder = _FIELD_RE.match(text, i)
            if placeholder and placeholder.group(1):
                self.kinds[i] = frame.kind
                backquotes = sum(f.closer in _BACKQUOTES for f in frames)
                if backquotes:
                    self.backquoted.add(i)
                if backquotes > 1 or any(f.closer == "}" for f in frames):
                    # ${...} has quoting rules of its own (bash reads '...' in it, even within
                    # double quotes), backquotes nested in backquotes an escaping per level
                    self.kinds[i] = "plain-only"
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
            elif c == "\\" and ahead == "`" and any(f.closer in _BACKQUOTES for f in frames):
                # a backquote in backquotes: a command substitution nested one level deeper
                if frame.closer == "\\`":
                    frames.pop()
                else:
                    frames.append(_Frame("plain", "\\`"))
                i += 1
            elif c == "\\":
                after = _FIELD_RE.match(text, i + 1)
                if after and after.group(1):
                    self.kinds[i + 1] = "escaped"
                    i = after.end()
                    continue
                i += 1
            elif frame.kind == "ansi":
                if c == "'":
                    frames.pop()
            elif c == "$" and ahead == "'" and plain:
                frames.append(_Frame("ansi", "'"))
                i += 1
            elif c == "'" and plain:
                frames.append(_Frame("single", "'"))
            elif c == '"' and frame.kind == "double" and frame.closer == '"':
                frames.pop()
            elif c == '"' and frame.kind in ("plain", "double"):
                frames.append(_Frame("double", '"'))
            elif c == "`":
                if frame.closer == "`":
                    frames.pop()
                else:
                    frames.append(_Frame("plain", "`"))
            elif c == "$" and text.startswith("((", i + 1):
                frames.append(_Frame("arith", ")", depth=2))
                i += 2
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
            elif c == "(" and frame.closer == ")":
                frame.depth += 1
            elif c == ")" and frame.closer == ")":
                frame.depth -= 1
                if frame.depth <= 0:
                    frames.pop()
            elif plain and c == "#" and frame.closer != "}" and _word_start(text, i):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                for inside in _FIELD_RE.finditer(text, i, end):
                    if inside.group(1):
                        self.kinds[inside.start()] = "comment"
                i = end
                continue
            elif plain and text.startswith("<<<", i):
                i += 2  # a here-string: a word, not a here-document
            elif plain and c == "<" and ahead == "<":
                i = self._heredoc_start(text, i + 2, heredocs)
                continue
            elif c == "\n" and heredocs:
                i = self._heredoc_bodies(text, i + 1, heredocs)
                heredocs.clear()
                continue
            i += 1

    def _heredoc_start(self, text: str, i: int, heredocs: list[tuple[str, bool]]) -> int:
        """Read the delimiter after ``<<`` (at ``i``): note it, return where reading goes on."""
        tabs = text.startswith("-", i)
        i += tabs
        while i < len(text) and text[i] in " \t":
            i += 1
        word = re.match(r"""(?:'[^']*'|"[^"]*"|\\.|[^\s;&|<>()])+""", text[i:])
        delimiter = word.group(0) if word else ""
        heredocs.append((delimiter.replace("'", "").replace('"', "").replace("\\", ""), tabs))
        return i + len(delimiter)

    def _heredoc_bodies(self, text: str, i: int, heredocs: list[tuple[str, bool]]) -> int:
        """Mark every placeholder in the bodies of ``heredocs`` (starting at ``i``, one after
        the other); return where the last one's delimiter line ends."""
        for delimiter, tabs in heredocs:
            while i < len(text):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                line = text[i:end]
                for inside in _FIELD_RE.finditer(text, i, end):
                    if inside.group(1):
                        self.kinds[inside.start()] = "heredoc"
                i = end + 1
                if (line.lstrip("\t") if tabs else line) == delimiter:
                    break
        return i


#: why a placeholder cannot stand where it does, by the kind of place
_UNQUOTABLE = {
    "heredoc": "a placeholder in a here-document's body cannot be quoted there: set a "
    "variable to it before the here-document and use that",
    "escaped": "a placeholder right after a backslash cannot be quoted: remove the backslash",
    "arith": "a placeholder in $((...)) takes a whole number only (it is read as arithmetic)",
    "plain-only": "a placeholder inside ${...} or in backquotes within backquotes takes only "
    "letters, digits and _@%+=:,./- (its quoting there differs between shells)",
}
#: a value that needs no quoting in any shell context
#: what closes a backquoted command substitution, and one nested in it
_BACKQUOTES = ("`", "\\`")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")
_UNPLAIN = re.compile(r"[^A-Za-z0-9_@%+=:,./-]")


def _word_start(text: str, i: int) -> bool:
    """``i`` is where a shell word starts (a ``#`` there starts a comment)."""
    return i == 0 or text[i - 1] in " \t\n;&|()<>`"


@dataclass
class _Frame:
    """One open context of a shell template: its quoting (``plain``, ``double``, ``single``,
    ``ansi`` for ``$'...'``, ``arith``), what closes it, the parentheses open in it (``$(``
    counts them) and the ``case`` statements open in it (their patterns' parentheses match
    none)."""

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
