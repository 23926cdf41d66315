"""Blue-green slots: the slot record, the proxy switch's shell script run for real, and the order
of a slot switch's operations against fake hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploylib import DeployFailed, Pipeline, build, http, push, switch, verify
from deploylib.commands import Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.remote.layout import Layout
from deploylib.remote.reading import parse_state, render_state
from deploylib.remote.slots import proxy_command
from deploylib.slots import SlotRecord, SlotState, parse_slots
from deploylib.testing import FakeFleet, deploy_with_fakes, environment

OLD = "20260101T000000Z-0ld0000"

# ---------------------------------------------------------------------------- the record


def test_the_idle_slot_and_the_slot_of_a_release() -> None:
    empty = SlotState()
    assert empty.idle() == "blue" and empty.running("r1") is None
    one = empty.started("blue", "r1").switched("blue", now=100.0)
    assert one.live == "blue" and one.idle() == "green" and one.running("r1") == "blue"
    two = one.started("green", "r2").switched("green", now=200.0)
    assert two.live == "green" and two.idle() == "blue"
    assert two.record("blue") == SlotRecord("r1", 200.0)  # idle since the switch
    assert two.record("green") == SlotRecord("r2", None)
    assert two.stopped("blue").running("r1") is None


def test_an_idle_slot_is_stopped_only_after_its_drain() -> None:
    state = SlotState().started("blue", "r1").switched("blue", 0).started("green", "r2")
    state = state.switched("green", now=100.0)
    assert state.drain_left("blue", 10, now=104.0) == pytest.approx(6.0)
    assert state.drain_left("blue", 10, now=111.0) == 0
    assert state.drain_left("blue", 10, now=50.0) == 10  # a clock gone back: never more
    assert SlotState().drain_left("blue", 10, now=0) == 0  # never took traffic


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"live": "purple", "slots": {}}',
        '{"live": null, "slots": {"red": {"release": null, "idle_since": null}}}',
        '{"live": "blue", "slots": {"blue": {"release": 7, "idle_since": null}}}',
        '{"live": "blue", "slots": {"blue": {"release": "r", "idle_since": "soon"}}}',
    ],
)
def test_a_damaged_record_is_no_record(text: str) -> None:
    assert parse_slots(text) is None


def test_the_record_is_read_with_the_state_in_one_round_trip() -> None:
    state = SlotState().started("blue", OLD).switched("blue", 5.0)
    layout = Layout("/srv/app")
    read = parse_state(render_state(current=OLD, releases=[OLD], slots=state), layout)
    assert read.slots == state and read.current == OLD
    assert parse_state(render_state(current=OLD, releases=[OLD]), layout).slots is None


# ---------------------------------------------------------------------------- the proxy switch


class Proxy:
    """An upstream file and check/reload commands that log their runs, run by a real shell."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "nginx dir $(touch PWNED)" / "app 'up'.conf"
        self.file.parent.mkdir(parents=True)
        self.file.write_text("server 127.0.0.1:8001;\n")
        self.runs = root / "runs"

    def switch(self, port: int, *, check: str = "true", reload: str = "true") -> int:
        command = proxy_command(
            Layout(str(self.root / "srv")),
            str(self.file),
            [(port, None)],
            check=f"echo check >> {self.runs}; {check}",
            reload=f"echo reload >> {self.runs}; {reload}",
        )
        done = subprocess.run(["sh", "-c", command.line], cwd=self.root, capture_output=True)
        return done.returncode

    def ran(self) -> list[str]:
        return self.runs.read_text().split() if self.runs.exists() else []


def test_the_upstream_file_is_replaced_checked_and_reloaded(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    assert proxy.switch(8002) == 0
    assert proxy.file.read_text().splitlines()[1:] == ["server 127.0.0.1:8002;"]
    assert proxy.ran() == ["check", "reload"]
    assert sorted(p.name for p in proxy.file.parent.iterdir()) == [proxy.file.name]
    assert not (tmp_path / "PWNED").exists()  # the path reached the shell quoted


def test_a_refused_configuration_puts_the_file_back(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    assert proxy.switch(8002, check="echo 'unknown directive' >&2; false") == 1
    assert proxy.file.read_text() == "server 127.0.0.1:8001;\n"
    assert proxy.ran() == ["check"]  # never reloaded
    assert sorted(p.name for p in proxy.file.parent.iterdir()) == [proxy.file.name]


def test_a_failed_reload_puts_the_file_back_and_reloads_it(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    flag = tmp_path / "reloaded-once"
    reload = f"if [ -e {flag} ]; then true; else touch {flag}; false; fi"
    assert proxy.switch(8002, reload=reload) == 1
    assert proxy.file.read_text() == "server 127.0.0.1:8001;\n"
    assert proxy.ran() == ["check", "reload", "reload"]  # the old file loaded again


def test_a_file_that_names_the_servers_already_is_left_alone(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path)
    assert proxy.switch(8002) == 0
    assert proxy.switch(8002, check="false") == 0  # nothing to change: nothing checked
    assert proxy.ran() == ["check", "reload"]


# ---------------------------------------------------------------------------- the order

PIPELINE = Pipeline(
    build("make {artifact}"),
    push(),
    switch(start="start {slot} on {port}", stop="stop {slot}"),
    verify(http("http://{host_address}:{port}/health"), attempts=1, wait=0),
)
STRATEGY = StrategySettings(
    kind="blue_green", ports=[8001, 8002], upstream_file="/etc/nginx/up.conf", drain=0
)


def slot_run(live: SlotState | None, unhealthy: int | None = None) -> tuple[object, list[str]]:
    """A deploy to one fake host whose slot record is ``live``; the operations in order."""
    order: list[str] = []
    fleet = FakeFleet()

    def respond(op: Operation) -> Result | None:
        if op.description == "lock" and live is not None:
            entry = {"event": "deploy", "outcome": "success", "release": OLD, "current": OLD}
            return Result(0, render_state(current=OLD, releases=[OLD], log=[entry], slots=live))
        if isinstance(op, Probe):
            order.append(f"check {op.url}")
            return Result(1, stderr="down") if op.url.endswith(f":{unhealthy}/health") else None
        if op.description in ("stop", "start"):
            order.append(f"{op.description}: {op.line.split(' && ', 1)[-1]}")
        elif op.description in ("proxy switch", "record slots", "unset current"):
            order.append(op.description)
        elif op.description.startswith("switch to"):
            order.append("current")
        return None

    fleet["h1"].respond(respond)
    env = environment(hosts=[Host("h1", "h1")], strategy=STRATEGY)
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, order


def test_a_release_starts_on_the_idle_slot_is_checked_there_then_goes_live() -> None:
    live = SlotState().started("blue", OLD).switched("blue", 0)
    outcome, order = slot_run(live)
    assert not isinstance(outcome, Exception), outcome
    assert order[:4] == [
        "stop: stop green",
        "record slots",
        "start: start green on 8002",
        "check http://h1:8002/health",
    ]
    assert order[4:] == ["proxy switch", "record slots", "current"]


def test_an_unhealthy_release_never_takes_traffic_and_is_stopped() -> None:
    live = SlotState().started("blue", OLD).switched("blue", 0)
    outcome, order = slot_run(live, unhealthy=8002)
    assert isinstance(outcome, DeployFailed)
    assert "proxy switch" not in order
    assert "current" not in order
    assert order[-2:] == [
        "stop: stop green",
        "record slots",
    ]


def test_a_variable_left_in_the_upstream_path_is_never_filled_with_a_secret() -> None:
    """``$${TOKEN}`` in deploy.toml is a literal ``${TOKEN}`` by the time the strategy reads
    it: the path keeps it as written, and the secret reaches no command line."""
    from deploylib.secrets import Secret

    secret = "upstream-s3cret-value"
    strategy = STRATEGY.model_copy(update={"upstream_file": "/etc/nginx/${TOKEN}.conf"})
    env = environment(
        hosts=[Host("h1", "h1")], strategy=strategy, variables={"TOKEN": Secret(secret)}
    )
    fleet = FakeFleet()
    outcome, _ = deploy_with_fakes(env, SLOT_PIPELINE_FOR_SECRETS, fleet)
    assert not isinstance(outcome, Exception), outcome
    lines = [op.line for op in fleet["h1"].operations]
    proxy = [line for line in lines if ".conf.deploylib.tmp" in line]
    assert proxy and "'/etc/nginx/${TOKEN}.conf'" in proxy[0]
    assert not any(secret in line for line in lines)


SLOT_PIPELINE_FOR_SECRETS = PIPELINE
