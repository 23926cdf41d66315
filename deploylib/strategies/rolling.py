"""``rolling``: ``batch`` targets at a time (a number, or "25%" of the fleet)."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import T, count_of


class Rolling:
    """Fixed-size batches in host order: at most ``size`` targets change at once."""

    name = "rolling"

    def __init__(self, size: int | str) -> None:
        self.size = size

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        step = count_of(self.size, len(targets))
        return [list(targets[i : i + step]) for i in range(0, len(targets), step)]
