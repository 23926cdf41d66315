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
    ``bake_wait`` seconds, one attempt each (a canary's), before the next batch may start."""

    pause: float = 0.0
    bake: float = 0.0
    bake_wait: float = 5.0


class Strategy(Protocol):
    name: str
    pacing: Pacing

    def batches(self, targets: Sequence[T]) -> list[list[T]]: ...


def count_of(size: int | str, total: int) -> int:
    """A number of targets from a number or a percentage of ``total``; at least 1."""
    if isinstance(size, str):
        return max(1, math.ceil(total * int(size.rstrip("%")) / 100))
    return max(1, size)
