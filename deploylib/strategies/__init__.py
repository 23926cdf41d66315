"""Which targets switch when, one module per strategy; adding one touches this package only.

A strategy only orders targets into batches; the runner switches each batch and runs the steps
after ``switch`` (``verify``) on it before the next batch. A failure in any batch puts back every
target switched so far, in this batch and the ones before.

    all       every target at once (default)
    rolling   ``batch`` targets at a time (a number, or "25%" of the fleet; default 25%),
              ``pause`` seconds between batches; ``max_fail`` targets (N or "N%") may fail and
              be put back alone while the rest go on
    canary    ``canary`` targets first (default 1), then the rest, ``batch`` at a time if given;
              ``bake``: seconds the canaries' checks repeat (every ``wait``) before the rest go
    blue_green two slots per host behind nginx: start on the idle slot, check it, switch the
              proxy (``weight``: a weighted canary that bakes first); see ``blue_green``
"""

from __future__ import annotations

from deploylib.config import StrategySettings
from deploylib.errors import ConfigError
from deploylib.strategies.all import AllAtOnce
from deploylib.strategies.base import Pacing, Strategy, count_of
from deploylib.strategies.blue_green import BlueGreen
from deploylib.strategies.canary import Canary
from deploylib.strategies.rolling import Rolling

__all__ = [
    "AllAtOnce",
    "BlueGreen",
    "Canary",
    "Pacing",
    "Rolling",
    "Strategy",
    "count_of",
    "strategy_for",
]


def strategy_for(settings: StrategySettings) -> Strategy:
    if settings.kind == "all":
        return AllAtOnce()
    if settings.kind == "rolling":
        size = settings.batch if settings.batch is not None else "25%"
        return Rolling(size, pause=settings.pause, max_fail=settings.max_fail)
    if settings.kind == "canary":
        return Canary(
            settings.canary if settings.canary is not None else 1,
            settings.batch,
            pause=settings.pause,
            bake=settings.bake,
            wait=settings.wait,
        )
    if settings.kind == "blue_green":
        return BlueGreen(
            settings.batch, weight=settings.weight, bake=settings.bake, wait=settings.wait
        )
    raise ConfigError(
        f"strategy {settings.kind!r} is not available in this version", key="strategy.kind"
    )
