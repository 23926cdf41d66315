"""``rolling``: ``batch`` targets at a time (a number, or "25%" of the fleet), ``pause`` seconds
apart; ``max_fail`` of them may fail and be left behind on the release they had."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import Pacing, T, count_of


class Rolling:
    """Fixed-size batches in host order: at most ``size`` targets change at once."""

    name = "rolling"

    def __init__(self, size: int | str, *, pause: float = 0.0, max_fail: int | str = 0) -> None:
        self.size = size
        self.pacing = Pacing(pause=pause, max_fail=max_fail)

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        step = count_of(self.size, len(targets))
        return [list(targets[i : i + step]) for i in range(0, len(targets), step)]
