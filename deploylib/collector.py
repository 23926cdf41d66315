"""The cyclic garbage collector's settings for a run of deploylib's program or of a task."""

from __future__ import annotations

import gc

#: the collector's thresholds for a run (Python's: 700, 10, 10). A run is short and most of
#: what it makes lives until its end (modules, the config and pipeline, connections, the state
#: of every host): at 700 the collector walked it all again some 110 times in a one-host
#: deploy, 35 to 55 ms with every thread stopped; at 10,000, 7 times, about 10 ms
COLLECT_EVERY = (10_000, 10, 10)


def quiet_collector() -> None:
    """Collect cycles less often for the rest of this process (``COLLECT_EVERY``)."""
    gc.set_threshold(*COLLECT_EVERY)


def freeze_leftovers() -> None:
    """What a finished task leaves dies with the process: frozen, the interpreter's last
    collection does not walk it (a fleet deploy leaves hundreds of thousands of objects:
    connections, events, the parsed state of every host)."""
    gc.freeze()
