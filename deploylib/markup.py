"""Console markup without rich, for output that is not a terminal.

deploylib's lines are written in rich's console markup (``[green]✓ deployed[/]``). On a terminal
rich renders them; piped (CI, logs, scripts) they only need their tags taken out, and importing
and running rich for that cost about 20 ms per run and a share of the controller's CPU per line
at fleet size. ``escape`` and ``plain`` follow rich's own rules (``rich.markup``: the same tag
pattern, backslash escapes), so one line of markup reads the same either way; what rich adds on
a terminal (colours, emoji codes as emoji, tabs expanded) is not done here.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import IO

#: a tag, with the backslashes before it (rich.markup.RE_TAGS)
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
#: what ``escape`` protects (rich.markup.escape)
_TAG_TO_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """``text`` to put into markup: whatever looks like a tag is escaped."""

    def escaped(match: re.Match[str]) -> str:
        backslashes, tag = match.groups()
        return f"{backslashes}{backslashes}\\{tag}"

    text = _TAG_TO_ESCAPE.sub(escaped, text)
    if text.endswith("\\") and not text.endswith("\\\\"):
        return text + "\\"
    return text


def plain(markup: str) -> str:
    """The text of ``markup``: its tags taken out, its escapes undone."""
    if "[" not in markup:
        return markup
    out: list[str] = []
    position = 0
    for match in _TAG.finditer(markup):
        whole, backslashes, _ = match.groups()
        start, end = match.span()
        if start > position:
            out.append(markup[position:start].replace("\\[", "["))
        position = end
        if backslashes:
            pairs, odd = divmod(len(backslashes), 2)
            out.append("\\" * pairs)
            if odd:  # an escaped tag: its text stays
                out.append(whole[len(backslashes) :])
    if position < len(markup):
        out.append(markup[position:].replace("\\[", "["))
    return "".join(out)


class PlainConsole:
    """Prints markup as plain lines on a stream: what rich's console does with a pipe."""

    is_terminal = False

    def __init__(self, *, stderr: bool = False, file: IO[str] | None = None) -> None:
        self._stderr = stderr
        self._file = file
        self._lock = threading.Lock()

    @property
    def file(self) -> IO[str]:
        """The stream, looked up when printing (as rich does: tests swap ``sys.stdout``)."""
        if self._file is not None:
            return self._file
        return sys.stderr if self._stderr else sys.stdout

    def print(self, markup: str = "", *, soft_wrap: bool = True) -> None:
        """One line (lines are never cut: ``soft_wrap`` is always so here)."""
        text = plain(markup) + "\n"
        with self._lock:
            out = self.file
            out.write(text)
            out.flush()
