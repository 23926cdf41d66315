"""Text from hosts made safe to show on a terminal.

A host's output, lock owner or release log is shown to the user; a hostile or broken host could
put terminal escape sequences in it to move the cursor, erase lines, set the window title or
ring the bell. ``printable`` removes them and makes every other control character visible.
"""

from __future__ import annotations

import re

# ESC sequences, and their 8-bit forms (C1):
#   CSI  ESC [ params intermediates final         (cursor moves, erase, colours, ...)
#   OSC, DCS, SOS, PM, APC: ESC ] P X ^ _ ... ended by BEL or ST (ESC \\ or 0x9c)
#   anything else: ESC, intermediates (0x20-0x2f), a final byte (0x30-0x7e) that does not
#   open one of the above (an unterminated one keeps its text, its ESC shown as \x1b)
_ESCAPE_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)
    | \x1b [\x20-\x2f]* [\x30-\x4f\x51-\x57\x59-\x5a\x5c\x60-\x7e]
    """,
    re.VERBOSE,
)
# C0 controls except tab and newline, DEL, C1 controls, and the Unicode controls that reorder
# or break the displayed text (bidirectional overrides and isolates, line/paragraph separators)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with terminal escape sequences removed and other control characters visible.

    Guarantees: the result holds no C0 control character but newline and tab, no DEL, no C1
    control, no bidirectional override and no line or paragraph separator. Escape sequences
    (CSI, OSC, DCS and the other string sequences when terminated, two- and three-byte ESC
    sequences) are removed whole. A Windows line end ``\\r\\n`` becomes ``\\n``. Every other
    control character is shown as Python's ``repr`` would: ``\\r``, ``\\x1b``, ``\\x9b``,
    ``\\u202e``. The result is for reading, not for parsing: a literal backslash in ``text``
    is left as it is.
    """
    if text.isprintable() or _CONTROL.search(text) is None:
        # nothing to take out: the common case, a script's or a log's lines (whose line breaks
        # and tabs make ``isprintable`` false) checked in one pass
        return text
    text = _ESCAPE_SEQUENCE.sub("", text.replace("\r\n", "\n"))
    return _CONTROL.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
