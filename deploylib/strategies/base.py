"""What a strategy is: something that orders targets into switch batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Strategy(Protocol):
    name: str

    def batches(self, targets: Sequence[T]) -> list[list[T]]: ...


def count_of(size: int | str, total: int) -> int:
    """A number of targets from a number or a percentage of ``total``; at least 1."""
    if isinstance(size, str):
        return max(1, math.ceil(total * int(size.rstrip("%")) / 100))
    return max(1, size)
