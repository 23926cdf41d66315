"""max_fail attacked, against fake hosts on a release of their own (``OLD``): hosts that cannot
be reached or whose switch was cut off are never left behind; a host left behind is never put
back twice, whatever ends the deploy later (the budget, a host gone, Ctrl-C); a put-back that
fails ends the deploy; and a host left behind keeps its release and logs ``rolled_back`` once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import pytest

from deploylib import DeployFailed, FleetInconsistent, Pipeline, build, http, push, switch, verify
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.remote.reading import render_state
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

HOSTS = [f"h{i}" for i in range(1, 7)]
OLD = "20260101T000000Z-0ld0000"
NEW = "20260102T030405Z-abc1234"
PIPELINE = Pipeline(
    build("make {artifact}"),
    push(),
    switch(restart="restart {release}"),
    verify(http("http://{host_address}/health"), attempts=1, wait=0),
)
UNHEALTHY = Result(1, stderr="unhealthy")
Fault = Callable[[Operation], Result | None]


def rolling(batch: int = 2, max_fail: int | str = 1) -> StrategySettings:
    return StrategySettings(kind="rolling", batch=batch, max_fail=max_fail)


def deploy(
    strategy: StrategySettings, faults: Mapping[str, Fault]
) -> tuple[object, FakeFleet, dict[str, str | None]]:
    """A deploy of NEW to hosts on OLD; ``faults`` may answer any operation of a host. Returns
    the outcome, the fleet and where ``current`` ended on each host."""
    fleet = FakeFleet()
    current: dict[str, str | None] = dict.fromkeys(HOSTS, OLD)
    for name in HOSTS:

        def respond(op: Operation, name: str = name) -> Result | None:
            if op.description == "lock":
                entry = {"event": "deploy", "outcome": "success", "release": OLD, "current": OLD}
                return Result(0, render_state(current=OLD, releases=[OLD], log=[entry]))
            fault = faults.get(name)
            answer = fault(op) if fault else None
            if answer is None and op.description.startswith("switch to "):
                current[name] = op.description.removeprefix("switch to ")
            return answer

        fleet[name].respond(respond)
    env = environment(hosts=[Host(h, h) for h in HOSTS], strategy=strategy)
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, fleet, current


def unhealthy(op: Operation) -> Result | None:
    return UNHEALTHY if isinstance(op, Probe) else None


def logged(fleet: FakeFleet, name: str) -> list[str]:
    return [
        json.loads(op.stdin)["outcome"]
        for op in fleet[name].operations
        if isinstance(op, Command) and op.description == "record" and isinstance(op.stdin, bytes)
    ]


def put_backs(fleet: FakeFleet, name: str) -> int:
    return [op.description for op in fleet[name].operations].count(f"switch to {OLD}")


def test_the_switch_descriptions_this_file_relies_on() -> None:
    outcome, fleet, current = deploy(rolling(), {})
    assert not isinstance(outcome, Exception), outcome
    assert set(current.values()) == {NEW}
    assert all(put_backs(fleet, name) == 0 for name in HOSTS)


@pytest.mark.parametrize(
    "fault",
    [
        Result(255, stderr="connection reset", unreachable=True),
        Result(124, stderr="timed out after 60 s", timed_out=True),
    ],
    ids=["unreachable", "cut-off"],
)
def test_a_host_whose_switch_was_lost_is_never_left_behind(fault: Result) -> None:
    """Where it is is unknown: the whole deploy goes back, even with budget to spare."""

    def lost(op: Operation) -> Result | None:
        return fault if op.description == f"switch to {NEW}" else None

    outcome, fleet, current = deploy(rolling(max_fail=3), {"h3": lost})

    assert isinstance(outcome, DeployFailed | FleetInconsistent), outcome
    assert "left behind" not in str(outcome)
    for name in ("h1", "h2", "h4"):
        assert current[name] == OLD, name
    assert current["h5"] == OLD and current["h6"] == OLD  # never switched
    assert "success" not in logged(fleet, "h1")


def test_a_host_that_stops_answering_its_checks_is_never_left_behind() -> None:
    def gone(op: Operation) -> Result | None:
        if isinstance(op, Probe):
            return Result(255, stderr="no route to host", unreachable=True)
        return None

    outcome, _, current = deploy(rolling(max_fail=3), {"h2": gone})

    assert isinstance(outcome, DeployFailed | FleetInconsistent), outcome
    assert "left behind" not in str(outcome)
    assert current["h1"] == OLD


def test_hosts_left_behind_are_put_back_once_when_the_budget_then_runs_out() -> None:
    """Budget 2: h1 and h2 fail together in the first batch and are left behind; h5 fails in
    the third, past the budget, and every host switched is put back; h1 and h2 not again."""
    faults = {"h1": unhealthy, "h2": unhealthy, "h5": unhealthy}
    outcome, fleet, current = deploy(rolling(max_fail=2), faults)

    assert type(outcome) is DeployFailed, outcome
    assert set(current.values()) == {OLD}
    assert put_backs(fleet, "h1") == 1 and put_backs(fleet, "h2") == 1
    for name in ("h3", "h4", "h5", "h6"):  # h6 switched with h5, in the same batch
        assert put_backs(fleet, name) == 1, name
    for name in HOSTS:
        assert logged(fleet, name) == ["rolled_back"], name


def test_a_host_left_behind_whose_put_back_fails_ends_the_deploy() -> None:
    """h2 fails its checks, and going back to OLD fails too: it cannot be left behind on a
    release it is not on; the deploy ends, every host switched is put back, h2 named."""

    def stuck(op: Operation) -> Result | None:
        if isinstance(op, Probe):
            return UNHEALTHY
        if op.description == f"switch to {OLD}":
            return Result(1, stderr="Read-only file system")
        return None

    outcome, _, current = deploy(rolling(max_fail=2), {"h2": stuck})

    assert isinstance(outcome, FleetInconsistent), outcome
    assert "h2" in str(outcome) and "left behind" not in str(outcome)
    assert current["h1"] == OLD
    assert all(current[name] == OLD for name in ("h3", "h4", "h5", "h6"))


def test_ctrl_c_after_a_host_was_left_behind_puts_the_rest_back_and_it_not_twice() -> None:
    """h1 is left behind in the first batch; Ctrl-C arrives during h3's switch."""

    def interrupt(op: Operation) -> Result | None:
        if op.description == f"switch to {NEW}":
            raise KeyboardInterrupt
        return None

    outcome, fleet, current = deploy(rolling(max_fail=2), {"h1": unhealthy, "h3": interrupt})

    assert isinstance(outcome, DeployFailed), outcome
    assert "interrupted" in str(outcome)
    assert set(current.values()) == {OLD}
    assert put_backs(fleet, "h1") == 1 and put_backs(fleet, "h2") == 1
    assert logged(fleet, "h1") == ["rolled_back"]


def test_the_split_end_lists_who_is_where_and_the_left_behind_keep_their_release() -> None:
    outcome, fleet, current = deploy(rolling(max_fail="34%"), {"h2": unhealthy, "h6": unhealthy})

    assert isinstance(outcome, FleetInconsistent) and outcome.exit_code == 4, outcome
    assert f"h2 → {OLD}" in str(outcome) and f"h6 → {OLD}" in str(outcome)
    assert "4 of 6" in str(outcome)
    assert outcome.whereabouts.releases == {
        name: OLD if name in ("h2", "h6") else NEW for name in HOSTS
    }
    assert {name: current[name] for name in ("h2", "h6")} == {"h2": OLD, "h6": OLD}
    for name in ("h2", "h6"):
        assert logged(fleet, name) == ["rolled_back"], name
        removed = [op.line for op in fleet[name].operations if op.description == "remove releases"]
        assert removed and NEW in removed[0], name
    for name in ("h1", "h3", "h4", "h5"):
        assert logged(fleet, name) == ["success"], name
        assert not any(
            op.description == "remove releases" and NEW in op.line for op in fleet[name].operations
        )
