"""Strategies: which hosts switch when, and what a failure in a later batch puts back."""

from __future__ import annotations

import pytest

from deploylib import DeployFailed, Pipeline, build, http, push, switch, verify
from deploylib.commands import Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.strategies import Canary, Rolling, count_of
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

HOSTS = [f"h{i}" for i in range(1, 6)]
PIPELINE = Pipeline(
    build("make artifact {artifact}"),
    push(),
    switch(restart="restart"),
    verify(http("http://{host_address}/health"), attempts=1, wait=0),
)


@pytest.mark.parametrize(
    ("strategy", "total", "sizes"),
    [
        (Rolling("25%"), 10, [3, 3, 3, 1]),
        (Rolling(2), 5, [2, 2, 1]),
        (Rolling("100%"), 4, [4]),
        (Canary(1, None), 5, [1, 4]),
        (Canary("20%", 2), 10, [2, 2, 2, 2, 2]),
        (Canary(3, None), 2, [2]),
    ],
)
def test_batches(strategy: Rolling | Canary, total: int, sizes: list[int]) -> None:
    batches = strategy.batches(list(range(total)))
    assert [len(b) for b in batches] == sizes
    assert [t for b in batches for t in b] == list(range(total))  # every host once, in order
    assert count_of("1%", 3) == 1


def run_with(
    strategy: StrategySettings, failing: str | None
) -> tuple[object, list[str], FakeFleet]:
    events: list[str] = []
    fleet = FakeFleet()
    for name in HOSTS:

        def record(op: Operation, name: str = name) -> Result | None:
            if op.description.startswith("switch to"):
                events.append(f"switch {name}")
            if isinstance(op, Probe):
                events.append(f"verify {name}")
                if name == failing:
                    return Result(1, stderr="unhealthy")
            return None

        fleet[name].respond(record)
    env = environment(hosts=[Host(h, h) for h in HOSTS], strategy=strategy)
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, events, fleet


def test_rolling_switches_batch_by_batch_after_each_verify() -> None:
    outcome, events, _ = run_with(StrategySettings(kind="rolling", batch=2), None)
    assert not isinstance(outcome, Exception)
    switches = [e for e in events if e.startswith("switch")]
    assert switches == [f"switch {h}" for h in HOSTS]
    # h3 switches only after h1 and h2 were verified
    assert events.index("switch h3") > max(events.index("verify h1"), events.index("verify h2"))


def test_rolling_failure_puts_back_every_batch_so_far_and_stops() -> None:
    outcome, events, fleet = run_with(StrategySettings(kind="rolling", batch=2), "h3")
    assert isinstance(outcome, DeployFailed)
    assert "switch h5" not in events  # the third batch never started
    for name in ("h1", "h2", "h3", "h4"):
        assert any(op.description == "unset current" for op in fleet[name].operations), name
    moves = ("unset current", "switch to")
    assert not any(op.description.startswith(moves) for op in fleet["h5"].operations)


def test_canary_failure_touches_only_the_canary() -> None:
    outcome, events, fleet = run_with(StrategySettings(kind="canary", canary=1), "h1")
    assert isinstance(outcome, DeployFailed)
    assert [e for e in events if e.startswith("switch")] == ["switch h1"]
    assert any(op.description == "unset current" for op in fleet["h1"].operations)


def test_canary_then_the_rest() -> None:
    outcome, events, _ = run_with(StrategySettings(kind="canary", canary=1), None)
    assert not isinstance(outcome, Exception)
    assert events.index("verify h1") < events.index("switch h2")
