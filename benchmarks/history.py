"""What a long release log costs a deploy's decisions, per host: reading the state (the log's
tail, up to ``LOG_TAIL`` lines) and what the end of a deploy decides from it (the rollback
target, what cleanup may remove).

    python benchmarks/history.py [--lines 100,1000,5000] [--runs 5]

No host is needed: the state a host prints is made here (every line a successful deploy, five
releases on disk), then parsed and decided on in this process, as the controller does once per
host. Prints the median milliseconds per host for each log length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploylib.remote.reading import LOG_TAIL, parse_state


def state_output(lines: int) -> str:
    """What a host's state read prints for a log of ``lines`` deploys (its last ``LOG_TAIL``)."""
    releases = [f"2026{i:010d}Z-r{i}" for i in range(lines)]
    log = []
    previous = None
    for release in releases:
        line = {
            "time": "2026-11-28T12:00:00+00:00",
            "event": "deploy",
            "outcome": "success",
            "release": release,
            "revision": release[-6:],
            "current": release,
            "previous": previous,
            "user": "someone@example.com",
            "controller": "laptop",
            "seconds": 3.1,
        }
        log.append("|" + json.dumps(line))
        previous = release
    tail = log[-LOG_TAIL:]
    on_disk = releases[-5:]
    return "\n".join(
        [
            "@@deploylib:current",
            "link",
            f"|releases/{releases[-1]}",
            "@@deploylib:releases",
            *(f"|{r} complete" for r in on_disk),
            "@@deploylib:lock",
            "@@deploylib:log",
            f"lines={lines}",
            *tail,
            "",
            "@@deploylib:slots",
            "",
            "@@deploylib:end",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", default="100,1000,5000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| log lines | read the state, ms per host | decide (rollback target, cleanup), ms |")
    print("|---|---|---|")
    for lines in (int(n) for n in args.lines.split(",")):
        output = state_output(lines)
        reads, decisions = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            state = parse_state(output)
            read = time.perf_counter()
            state.rollback_target()
            state.removable(3)
            state.unexplained()
            decided = time.perf_counter()
            reads.append(read - started)
            decisions.append(decided - read)
        print(
            f"| {lines} | {statistics.median(reads) * 1000:.1f} "
            f"| {statistics.median(decisions) * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
