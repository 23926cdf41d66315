"""Secret values and the redactor that keeps them out of every output.

A value read from an env file is a ``Secret`` unless the project lists its name in ``public_env``.
Secrets travel to commands only through the process environment or stdin, never through
a command line; and every string that leaves deploylib (terminal, JSON events, logs, error
messages, captured output of failed commands) passes through ``Redactor.redact`` first.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    """Replaces every known secret value in a string by ``***``."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | Secret) -> None:
        text = reveal(value)
        if len(text) >= MIN_REDACTED_LENGTH:
            self._values.add(text)
            # multi-line secrets also leak line by line through captured output
            for line in text.splitlines():
                if len(line) >= MIN_REDACTED_LENGTH:
                    self._values.add(line)

    def redact(self, text: str) -> str:
        if not self._values or not text:
            return text
        # longest first, so a secret that contains another is masked whole
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._values)
