"""``blue_green``: two slots on each host behind its nginx; a release starts on the idle slot, is
checked there, and goes live by a proxy switch. Hosts switch all at once, or ``batch`` at a
time; with ``weight`` (a weighted canary) the new slot first takes that percent of the requests
for ``bake`` seconds while its checks repeat every ``wait``."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.strategies.base import Pacing, T
from deploylib.strategies.rolling import Rolling


class BlueGreen:
    """Slot switches behind each host's proxy; the batches are those of ``batch`` if given."""

    name = "blue_green"
    slots = True

    def __init__(
        self,
        batch: int | str | None = None,
        *,
        weight: int | None = None,
        bake: float = 0.0,
        wait: float = 5.0,
    ) -> None:
        self.batch = batch
        self.weight = weight
        self.pacing = Pacing(bake=bake, bake_wait=wait)

    def batches(self, targets: Sequence[T]) -> list[list[T]]:
        if self.batch is None:
            return [list(targets)] if targets else []
        return Rolling(self.batch).batches(targets)
