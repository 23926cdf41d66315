"""Which targets switch when. A strategy only orders targets into batches; the runner switches
each batch and runs the steps after ``switch`` (``verify``) on it before the next batch.
"""

from __future__ import annotations

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


def strategy_for(settings: StrategySettings) -> Strategy:
    if settings.kind == "all":
        return AllAtOnce()
    raise ConfigError(
        f"strategy {settings.kind!r} is not available in this version", key="strategy.kind"
    )
