"""``canary``: ``canary`` targets first (default 1), then the rest, ``batch`` at a time if given."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import T, count_of
from deploylib.strategies.rolling import Rolling


class Canary:
    """A small first batch that must pass before anybody else switches."""

    name = "canary"

    def __init__(self, canary: int | str, then: int | str | None) -> None:
        self.canary = canary
        self.then = then

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        first = min(count_of(self.canary, len(targets)), len(targets))
        rest = list(targets[first:])
        later = Rolling(self.then).batches(rest) if self.then is not None else [rest]
        return [batch for batch in [list(targets[:first]), *later] if batch]
