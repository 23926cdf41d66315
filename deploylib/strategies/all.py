"""``all``: every target at once (the default)."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import Pacing, T


class AllAtOnce:
    """Every target in one batch: the shortest window with two releases live."""

    name = "all"
    pacing = Pacing()

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        return [list(targets)] if targets else []
