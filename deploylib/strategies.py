"""Which targets switch when. A strategy only orders targets into batches; the runner switches
each batch and runs the steps after ``switch`` (``verify``) on it before the next batch. A failure
in any batch puts back every target switched so far, in this batch and the ones before.

    all       every target at once (default)
    rolling   ``batch`` targets at a time (a number, or "25%" of the fleet; default 25%)
    canary    ``canary`` targets first (default 1), then the rest, ``batch`` at a time if given
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, TypeVar

from deploylib.config import StrategySettings
from deploylib.errors import ConfigError

T = TypeVar("T")


class Strategy(Protocol):
    name: str

    def batches(self, targets: Sequence[T]) -> list[list[T]]: ...


class AllAtOnce:
    """Every target in one batch: the shortest window with two releases live."""

    name = "all"

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        return [list(targets)] if targets else []


class Rolling:
    """Fixed-size batches in host order: at most ``size`` targets change at once."""

    name = "rolling"

    def __init__(self, size: int | str) -> None:
        self.size = size

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        step = count_of(self.size, len(targets))
        return [list(targets[i : i + step]) for i in range(0, len(targets), step)]


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


def count_of(size: int | str, total: int) -> int:
    """A number of targets from a number or a percentage of ``total``; at least 1."""
    if isinstance(size, str):
        return max(1, math.ceil(total * int(size.rstrip("%")) / 100))
    return max(1, size)


def strategy_for(settings: StrategySettings) -> Strategy:
    if settings.kind == "all":
        return AllAtOnce()
    if settings.kind == "rolling":
        return Rolling(settings.batch if settings.batch is not None else "25%")
    if settings.kind == "canary":
        return Canary(settings.canary if settings.canary is not None else 1, settings.batch)
    raise ConfigError(
        f"strategy {settings.kind!r} is not available in this version", key="strategy.kind"
    )
