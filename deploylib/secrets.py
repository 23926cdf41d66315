"""Secret values and the redactor that keeps them out of every output.

A value read from an env file is a ``Secret`` unless the project lists its name in ``public_env``.
Secrets travel to commands only through the process environment or stdin, never through
a command line; and every string that leaves deploylib (terminal, JSON events, logs, error
messages, captured output of failed commands) passes through ``Redactor.redact`` first.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from deploylib import envfile

MASK = "***"

# Values shorter than this are not searched for in output: masking every "1" or "on" would
# garble the output without protecting anything that deserves the name secret.
MIN_REDACTED_LENGTH = 3


class Secret:
    """A string that prints as ``***``; ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def reveal(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class Redactor:
    """Replaces every known secret value in a string by ``***``, in every encoding deploylib
    itself writes it in.

    For a value of at least ``MIN_REDACTED_LENGTH`` characters, and for each of its lines that
    long, these forms are masked (``encodings``): the raw text; the dotenv form written to
    ``shared/.env`` (``envfile.value_token``); ``shlex.quote``; the JSON string body, ASCII-only
    and not; the ``repr`` body; the ``printf '%b'`` word the SSH backend sends multi-line values
    as, and its body; its percent-encoded forms, and its head before a ``#`` or ``?`` (where a
    URL parser cuts it). Where found occurrences overlap, their union is masked as one ``***``.

    All forms are searched at once by one compiled regular expression shaped as a prefix tree,
    so the cost grows with the length of the text, hardly with the number of secrets.
    """

    def __init__(self, values: Iterable[str | Secret] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        for value in values:
            self.add(value)

    def add(self, value: str | Secret) -> None:
        text = reveal(value)
        if len(text) < MIN_REDACTED_LENGTH:
            return
        forms = encodings(text)
        # a value with blanks at its ends is often shown without them
        if len(text.strip()) >= MIN_REDACTED_LENGTH:
            forms |= encodings(text.strip())
        # multi-line secrets also leak line by line through captured output
        for line in text.splitlines():
            if len(line) >= MIN_REDACTED_LENGTH and not line.isspace():
                forms |= encodings(line)
        # in a URL (a check's, the webhook's) a value travels percent-encoded, and a parser
        # cuts it at '#' (a fragment) or '?': its head is what an error message may show
        forms |= {quote(text, safe=""), quote(text), quote_plus(text)}
        for cut in ("#", "?"):
            head = text.split(cut, 1)[0]
            if head != text and len(head.strip()) >= max(MIN_REDACTED_LENGTH, 6):
                forms |= encodings(head)
        with self._lock:
            self._forms |= {form for form in forms if len(form) >= MIN_REDACTED_LENGTH}
            self._pattern = None

    def redact(self, text: str) -> str:
        if not text:
            return text
        pattern = self._compiled()
        if pattern is None:
            return text
        spans = _merged(match.span(1) for match in pattern.finditer(text))
        if not spans:
            return text
        parts: list[str] = []
        end = 0
        for start, stop in spans:
            parts.append(text[end:start])
            parts.append(MASK)
            end = stop
        parts.append(text[end:])
        return "".join(parts)

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def longest(self) -> int:
        """The length of the longest form masked: text cut this far from its end cannot
        split a secret that the text holds whole."""
        with self._lock:
            return max(map(len, self._forms), default=0)

    def safe_cut(self, text: str, at: int) -> int:
        """A position at or before ``at`` (after it only when a secret starts at 0) that lies
        inside no occurrence of a secret in ``text``: cutting there splits none."""
        pattern = self._compiled()
        if pattern is None:
            return at
        for start, stop in _merged(match.span(1) for match in pattern.finditer(text)):
            if start < at < stop:
                return start if start > 0 else stop
        return at

    def __bool__(self) -> bool:
        return bool(self._forms)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._forms:
                # a lookahead finds every occurrence, also those overlapping another
                self._pattern = re.compile(f"(?=({_prefix_tree(sorted(self._forms))}))")
            return self._pattern


def encodings(value: str) -> set[str]:
    """Every form deploylib itself may write ``value`` in (see ``Redactor``)."""
    token = envfile.value_token(value)
    printf_body = value.replace("\\", "\\\\").replace("\n", "\\n")
    return {
        value,
        token,
        token[1:-1] if token.startswith('"') else token,
        shlex.quote(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        # inside the repr of a longer text that holds the other quote too
        value.replace("\\", "\\\\").replace("'", "\\'"),
        value.replace("\\", "\\\\").replace('"', '\\"'),
        envfile.printf_escaped(value),
        printf_body,
    }


# Past this depth a subtree of the prefix tree is written as a flat alternation: Python's
# regular expression parser recurses once per nested group and gives up at a few hundred.
_MAX_TREE_DEPTH = 40


def _prefix_tree(words: list[str], depth: int = 0) -> str:
    """A regex matching the longest of ``words`` (sorted, distinct) that starts at a position.

    Words that share a prefix share its branch, so at each position the engine follows one path
    instead of trying every word in turn."""
    optional = bool(words) and words[0] == ""
    rest = words[1:] if optional else words
    if not rest:
        return ""
    if depth >= _MAX_TREE_DEPTH:
        flat = "|".join(re.escape(w) for w in sorted(rest, key=len, reverse=True))
        return f"(?:{flat})?" if optional else f"(?:{flat})"
    branches = []
    for _, group in itertools.groupby(rest, key=lambda w: w[0]):
        members = list(group)
        common = _common_prefix(members[0], members[-1])  # sorted: first and last differ most
        tails = [w[len(common) :] for w in members]
        branches.append(re.escape(common) + _prefix_tree(tails, depth + 1))
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{body})?" if optional else body


def _common_prefix(first: str, last: str) -> str:
    size = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        size += 1
    return first[:size]


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``(start, stop)`` spans merged where they overlap or touch."""
    merged: list[tuple[int, int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            if stop > merged[-1][1]:
                merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged
