"""``canary``: ``canary`` targets first (default 1), then the rest, ``batch`` at a time if given;
the canaries may ``bake`` (their checks repeated every ``wait`` seconds) before the rest go."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import Pacing, T, count_of
from deploylib.strategies.rolling import Rolling


class Canary:
    """A small first batch that must pass before anybody else switches."""

    name = "canary"

    def __init__(
        self,
        canary: int | str,
        then: int | str | None,
        *,
        pause: float = 0.0,
        bake: float = 0.0,
        wait: float = 5.0,
    ) -> None:
        self.canary = canary
        self.then = then
        self.pacing = Pacing(pause=pause, bake=bake, bake_wait=wait)

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        first = min(count_of(self.canary, len(targets)), len(targets))
        rest = list(targets[first:])
        later = Rolling(self.then).batches(rest) if self.then is not None else [rest]
        return [batch for batch in [list(targets[:first]), *later] if batch]
