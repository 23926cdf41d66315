"""Strategies: which hosts switch when, and what a failure in a later batch puts back."""

from __future__ import annotations

import json
import time

import pytest

from deploylib import DeployFailed, FleetInconsistent, Pipeline, build, http, push, switch, verify
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.remote.reading import render_state
from deploylib.strategies import Canary, Rolling, count_of
from deploylib.testing import FakeFleet, deploy_with_fakes, environment
from tests.conftest import Project

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
    strategy: StrategySettings, failing: str | set[str] | None
) -> tuple[object, list[str], FakeFleet]:
    events: list[str] = []
    fleet = FakeFleet()
    for name in HOSTS:

        def record(op: Operation, name: str = name) -> Result | None:
            if op.description.startswith("switch to"):
                events.append(f"switch {name}")
            if isinstance(op, Probe):
                events.append(f"verify {name}")
                if name == failing or (isinstance(failing, set) and name in failing):
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


def timed_run(
    strategy: StrategySettings, failing_after: int | None = None
) -> tuple[object, list[tuple[float, str]], FakeFleet]:
    """A deploy to fake hosts, each switch and check stamped with its time; with
    ``failing_after``, h1's check fails from its Nth call on (a canary that sickens)."""
    started = time.monotonic()
    events: list[tuple[float, str]] = []
    fleet = FakeFleet()
    checks = {"h1": 0}
    for name in HOSTS:

        def record(op: Operation, name: str = name) -> Result | None:
            now = round(time.monotonic() - started, 2)
            if op.description.startswith("switch to"):
                events.append((now, f"switch {name}"))
            if isinstance(op, Probe):
                events.append((now, f"verify {name}"))
                if name == "h1":
                    checks["h1"] += 1
                    if failing_after is not None and checks["h1"] >= failing_after:
                        return Result(1, stderr="error ratio 7%")
            return None

        fleet[name].respond(record)
    env = environment(hosts=[Host(h, h) for h in HOSTS], strategy=strategy)
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, events, fleet


def test_rolling_pauses_between_batches() -> None:
    outcome, events, _ = timed_run(StrategySettings(kind="rolling", batch=2, pause=0.3))
    assert not isinstance(outcome, Exception)
    at = {name: when for when, name in events}
    assert at["switch h3"] - at["verify h2"] >= 0.3  # the pause, after the batch's checks
    assert at["switch h5"] - at["verify h4"] >= 0.3
    order = [name for _, name in events]
    assert order.index("switch h2") < order.index("verify h1")  # a batch switches together


def test_canaries_bake_before_the_rest_switch() -> None:
    strategy = StrategySettings(kind="canary", canary=1, bake=0.5, wait=0.1)
    outcome, events, _ = timed_run(strategy)
    assert not isinstance(outcome, Exception)
    canary_checks = [when for when, name in events if name == "verify h1"]
    first_other = next(when for when, name in events if name == "switch h2")
    assert len(canary_checks) >= 2  # the verify, then rounds every 0.1 s for 0.5 s
    assert first_other - canary_checks[0] >= 0.5


def test_a_canary_that_fails_while_baking_is_put_back_and_nobody_else_switches() -> None:
    strategy = StrategySettings(kind="canary", canary=1, bake=2, wait=0.05)
    outcome, events, fleet = timed_run(strategy, failing_after=3)
    assert isinstance(outcome, DeployFailed)
    assert "error ratio 7%" in str(outcome)
    assert [name for _, name in events if name.startswith("switch")] == ["switch h1"]
    assert any(op.description == "unset current" for op in fleet["h1"].operations)
    # one attempt per round: the first failing round ends it, not retried into a pass
    assert len([n for _, n in events if n == "verify h1"]) == 3


def test_pacing_settings_belong_to_their_strategies(project: Project) -> None:
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\n[environments.dev]\nhosts = ["local"]\n'
        'deploy_to = "target"\n[environments.dev.strategy]\nkind = "rolling"\nbake = 30\n',
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 2
    assert "environments.dev.strategy.bake" in done.stdout + done.stderr
    assert "bake is for canary" in done.stdout + done.stderr


def drained_run(
    strategy: StrategySettings, failing: str | None = None
) -> tuple[object, list[str], FakeFleet]:
    """Every switch, check and load-balancer hook, in the order they happened."""
    order: list[str] = []
    fleet = FakeFleet()

    def hooks(op: Operation) -> Result | None:
        if op.description in ("drain", "undrain"):
            order.append(op.line)
        return None

    fleet.controller.respond(hooks)
    for name in HOSTS:

        def record(op: Operation, name: str = name) -> Result | None:
            if op.description in ("drain", "undrain"):
                order.append(f"{name}$ {op.line}")
            if op.description.startswith("switch to"):
                order.append(f"switch {name}")
            if op.description == "unset current":
                order.append(f"put back {name}")
            if isinstance(op, Probe):
                order.append(f"verify {name}")
                if name == failing:
                    return Result(1, stderr="unhealthy")
            return None

        fleet[name].respond(record)
    env = environment(hosts=[Host(h, h) for h in HOSTS], strategy=strategy)
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, order, fleet


def behind_lb(**settings: int | str) -> StrategySettings:
    """A rolling strategy whose batches leave an external load balancer while they switch."""
    return StrategySettings.model_validate(
        {"kind": "rolling", "drain": "lb-ctl disable {host}", "undrain": "lb-ctl enable {host}"}
        | settings
    )


def test_each_batch_leaves_the_load_balancer_while_it_switches() -> None:
    outcome, order, _ = drained_run(behind_lb(batch=2))
    assert not isinstance(outcome, Exception)
    first = order[: order.index("lb-ctl disable h3")]
    assert first[:2] == ["lb-ctl disable h1", "lb-ctl disable h2"]
    assert first[-2:] == ["lb-ctl enable h1", "lb-ctl enable h2"]
    assert first.index("verify h2") < first.index("lb-ctl enable h1")  # back in once checked
    assert order.index("lb-ctl disable h3") > order.index("lb-ctl enable h2")
    assert order[-1] == "lb-ctl enable h5"


def test_a_failed_batch_is_put_back_before_it_returns_to_the_load_balancer() -> None:
    outcome, order, _ = drained_run(behind_lb(batch=2), "h3")
    assert isinstance(outcome, DeployFailed)
    assert "lb-ctl disable h5" not in order  # the third batch never started
    back_in = order.index("lb-ctl enable h3")
    assert order.index("put back h3") < back_in and order.index("put back h4") < back_in
    assert "lb-ctl enable h4" in order


def test_hooks_may_run_on_the_hosts_themselves() -> None:
    settings = StrategySettings(
        kind="rolling", batch=5, drain="touch {shared_path}/out", undrain="rm x", drain_on="host"
    )
    outcome, order, fleet = drained_run(settings)
    assert not isinstance(outcome, Exception)
    assert "h1$ touch /srv/app/shared/out" in order[0:5]
    assert not [op for op in fleet.controller.operations if op.description == "drain"]


def test_drain_without_undrain_is_refused(project: Project) -> None:
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\n[environments.dev]\nhosts = ["local"]\n'
        'deploy_to = "target"\n[environments.dev.strategy]\nkind = "rolling"\n'
        'drain = "lb-ctl disable {host}"\n',
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 2 and "environments.dev.strategy.undrain" in done.stdout + done.stderr
    project.write(
        "deploy.toml",
        project.root.joinpath("deploy.toml").read_text() + 'undrain = "lb-ctl enable {hots}"\n',
    )
    typo = project.cli("deploy", "--env", "dev")
    assert typo.returncode == 2 and "unknown placeholder {hots}" in typo.stdout + typo.stderr


def logged(fleet: FakeFleet, name: str) -> list[str]:
    """The outcomes ``name``'s release log was sent, in order."""
    return [
        json.loads(op.stdin)["outcome"]
        for op in fleet[name].operations
        if isinstance(op, Command) and op.description == "record" and isinstance(op.stdin, bytes)
    ]


def test_max_fail_leaves_a_sick_host_behind_and_the_rest_go_on() -> None:
    outcome, events, fleet = run_with(StrategySettings(kind="rolling", batch=2, max_fail=1), "h3")
    assert isinstance(outcome, FleetInconsistent)  # exit 4: the fleet is split
    assert outcome.exit_code == 4
    assert "deployed" in str(outcome) and "4 of 5" in str(outcome)
    assert "h3 → (no release)" in str(outcome)  # what it had: nothing, on a first deploy
    assert [e for e in events if e.startswith("switch")] == [f"switch {h}" for h in HOSTS]
    assert any(op.description == "unset current" for op in fleet["h3"].operations)
    for name in ("h1", "h2", "h4", "h5"):
        assert not any(op.description == "unset current" for op in fleet[name].operations)
        assert logged(fleet, name) == ["success"], name
    assert logged(fleet, "h3") == ["rolled_back"]
    removed = [op.line for op in fleet["h3"].operations if op.description == "remove releases"]
    assert removed and "20260102T030405Z-abc1234" in removed[0]  # its unwanted new release
    assert outcome.whereabouts.releases["h3"] is None
    assert len({outcome.whereabouts.releases[h] for h in ("h1", "h2", "h4", "h5")}) == 1


def test_one_failure_past_max_fail_puts_every_switched_host_back() -> None:
    outcome, events, fleet = run_with(
        StrategySettings(kind="rolling", batch=2, max_fail=1), {"h2", "h4"}
    )
    assert type(outcome) is DeployFailed and outcome.exit_code == 1
    assert "switch h5" not in events  # the budget ran out in the second batch
    for name in ("h1", "h2", "h3", "h4"):
        assert any(op.description == "unset current" for op in fleet[name].operations), name
        assert logged(fleet, name)[-1] == "rolled_back", name
    # h2, put back alone in the first batch, is not put back a second time
    assert [op.description for op in fleet["h2"].operations].count("unset current") == 1


def test_max_fail_as_a_share_of_the_fleet_rounds_down() -> None:
    two = StrategySettings(kind="rolling", batch=1, max_fail="40%")  # 2 of 5
    outcome, _, _ = run_with(two, {"h1", "h4"})
    assert isinstance(outcome, FleetInconsistent)
    assert outcome.whereabouts.releases["h5"] is not None
    one = StrategySettings(kind="rolling", batch=1, max_fail="39%")  # 1 of 5
    outcome, events, _ = run_with(one, {"h1", "h4"})
    assert type(outcome) is DeployFailed and "switch h5" not in events


def test_every_host_left_behind_is_a_failed_deploy_not_a_split_one() -> None:
    outcome, _, _ = run_with(StrategySettings(kind="rolling", batch=2, max_fail="100%"), set(HOSTS))
    assert type(outcome) is DeployFailed and outcome.exit_code == 1
    assert "every host" in str(outcome)


def test_max_fail_is_for_rolling(project: Project) -> None:
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\n[environments.dev]\nhosts = ["local"]\n'
        'deploy_to = "target"\n[environments.dev.strategy]\nkind = "canary"\nmax_fail = 1\n',
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 2
    assert "environments.dev.strategy.max_fail" in done.stdout + done.stderr


def test_a_host_left_behind_whose_old_release_fails_too_is_said_to() -> None:
    old = "20260101T000000Z-0ld0000"
    fleet = FakeFleet()

    def sick(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.description == "lock":
            entry = {"event": "deploy", "outcome": "success", "release": old, "current": old}
            return Result(0, render_state(current=old, releases=[old], log=[entry]))
        return Result(1, stderr="unhealthy") if isinstance(op, Probe) else None

    fleet["h3"].respond(sick)
    env = environment(
        hosts=[Host(h, h) for h in HOSTS],
        strategy=StrategySettings(kind="rolling", batch=2, max_fail=1),
    )
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    assert isinstance(outcome, FleetInconsistent)
    assert f"h3 → {old} (which fails its checks too)" in str(outcome)
