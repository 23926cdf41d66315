"""What a strategy is: something that orders targets into switch batches, and paces them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Pacing:
    """How the batches follow each other: ``pause`` seconds before each batch after the first;
    ``bake`` seconds after the first batch is verified during which its checks run again every
    ``bake_wait`` seconds, one attempt each (a canary's), before the next batch may start;
    ``max_fail`` targets (a number or a percentage of all) may fail and be put back while the
    others go on (0: the first failure puts every switched target back)."""

    pause: float = 0.0
    bake: float = 0.0
    bake_wait: float = 5.0
    max_fail: int | str = 0

    def failure_budget(self, total: int) -> int:
        """How many of ``total`` targets may be left behind on the release they had."""
        if isinstance(self.max_fail, str):
            return math.floor(total * int(self.max_fail.rstrip("%")) / 100)
        return self.max_fail


class Strategy(Protocol):
    name: str
    pacing: Pacing

    def batches(self, targets: Sequence[T]) -> list[list[T]]: ...


def count_of(size: int | str, total: int) -> int:
    """A number of targets from a number or a percentage of ``total``; at least 1."""
    if isinstance(size, str):
        return max(1, math.ceil(total * int(size.rstrip("%")) / 100))
    return max(1, size)
