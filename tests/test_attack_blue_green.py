"""Blue-green and the weighted canary, attacked: the slot record after failures and signals, the
proxy after a deploy killed mid-canary, a damaged or hand-edited record, hanging proxy commands,
hostile upstream paths and secrets.

The fast tests run against fake hosts whose slot record, slots and upstream file are kept as the
commands sent to them change them (``SlotHost``). The slow ones deploy to this machine behind a
real nginx on 127.0.0.1 with real gunicorn on the slots (the bed of ``tests/test_blue_green.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploylib import DeployFailed, FleetInconsistent, Pipeline, build, http, push, switch, verify
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.remote.reading import render_state
from deploylib.remote.slots import read_upstream_command, upstream_ports
from deploylib.reporting import RecordingReporter
from deploylib.runner import Runner
from deploylib.secrets import Secret, reveal
from deploylib.slots import SlotState, parse_slots
from deploylib.testing import TOKEN, FakeFleet, deploy_with_fakes, environment
from tests.conftest import Project, start_cli
from tests.testbed.load import Load, free_port
from tests.testbed.nginx import nginx
from tests.testbed.slots import TOML, Slots, closed_within, event_of, upstream_servers

OLD = "20260101T000000Z-0ld0000"
NEW = "20260102T030405Z-abc1234"  # the release id of a fake deploy

# ---------------------------------------------------------------------------- fake hosts

PIPELINE = Pipeline(
    build("make {artifact}"),
    push(),
    switch(start="start {slot} on {port}", stop="stop {slot}"),
    verify(http("http://{host_address}:{port}/health"), attempts=1, wait=0),
)


def strategy(**extra: object) -> StrategySettings:
    settings: dict[str, object] = {
        "kind": "blue_green",
        "ports": [8001, 8002],
        "upstream_file": "/etc/nginx/up.conf",
        "drain": 0,
    }
    settings.update(extra)
    return StrategySettings.model_validate(settings)


class SlotHost:
    """A fake host with blue live on ``OLD``: what runs on each slot, the upstream file and the
    slot record, kept as the operations sent to it change them."""

    def __init__(self, record: str | None = None) -> None:
        live = SlotState().started("blue", OLD).switched("blue", 0)
        self.record_text = live.as_json() if record is None else record
        self.running: dict[str, str | None] = {"blue": OLD, "green": None}
        self.upstream = [8001]
        self.fail: dict[str, Result] = {}
        self.sick: set[int] = set()
        self.staged = ""

    def respond(self, op: Operation) -> Result | None:
        if op.description == "lock":
            entry = {"event": "deploy", "outcome": "success", "release": OLD, "current": OLD}
            state = render_state(current=OLD, releases=[OLD], log=[entry])
            record = self.record_text.replace("\n", " ")
            return Result(
                0, state.replace("@@deploylib:slots\n", f"@@deploylib:slots\n|{record}\n")
            )
        if isinstance(op, Probe):
            port = int(op.url.split(":")[2].split("/")[0])
            release = self.running[self.slot_of(port)]
            if release is None or port in self.sick:
                return Result(1, stderr="connection refused")
            return Result(0, stdout=f"ok {release}")
        if op.description in self.fail:
            return self.fail[op.description]
        if op.description == "stage slots" and isinstance(op, Command):
            assert isinstance(op.stdin, bytes)
            self.staged = op.stdin.decode()
        elif op.description == "record slots" and isinstance(op, Command):
            self.record_text = op.stdin.decode() if isinstance(op.stdin, bytes) else self.staged
        elif op.description == "stop":
            self.running[op.line.rsplit(" ", 1)[-1]] = None
        elif op.description == "start":
            words = op.line.split()
            slot = words[words.index("start") + 1]
            self.running[slot] = op.line.split("/releases/", 1)[1].split()[0].strip("'")
        elif op.description in ("proxy switch", "proxy weights"):
            self.upstream = [int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+)", op.line)]
        elif op.description == "read upstream":
            text = "".join(f"server 127.0.0.1:{p};\n" for p in self.upstream)
            return Result(0, stdout=text)
        return None

    @staticmethod
    def slot_of(port: int) -> str:
        return {8001: "blue", 8002: "green"}[port]

    @property
    def record(self) -> SlotState:
        state = parse_slots(self.record_text)
        assert state is not None, self.record_text
        return state


def deploy_to(host: SlotHost, settings: StrategySettings | None = None) -> tuple[object, FakeFleet]:
    fleet = FakeFleet()
    fleet["h1"].respond(host.respond)
    env = environment(hosts=[Host("h1", "h1")], strategy=settings or strategy())
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome, fleet


def assert_truthful(host: SlotHost) -> None:
    """The record says what runs on each slot (a slot recorded as running a release runs it,
    and a slot recorded as stopped runs nothing) and names the slot the proxy sends to."""
    record = host.record
    for name in ("blue", "green"):
        assert record.record(name).release == host.running[name], (name, host.record_text)
    assert host.upstream == [{"blue": 8001, "green": 8002}[record.live or "blue"]]


@pytest.mark.parametrize(
    "result",
    [
        Result(1, stderr="gunicorn cannot load the app"),
        Result(124, stderr="timed out after 5 s", timed_out=True),
    ],
    ids=["fails", "times-out"],
)
def test_a_start_that_fails_leaves_its_slot_stopped_and_recorded_stopped(result: Result) -> None:
    """The record is written before the start runs: a start that fails (or hangs and is cut
    off, leaving maybe a daemon behind) must not leave a slot recorded as running a release
    whose directory the failed deploy removes."""
    host = SlotHost()

    def half_started(op: Operation) -> Result | None:
        if op.description == "start":
            host.running["green"] = NEW  # a daemon got away before the start failed
            return result
        return host.respond(op)

    fleet = FakeFleet()
    fleet["h1"].respond(half_started)
    env = environment(hosts=[Host("h1", "h1")], strategy=strategy())
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)

    assert type(outcome) is DeployFailed, outcome
    assert "remove releases" in [op.description for op in fleet["h1"].operations]
    assert host.record.running(NEW) is None, host.record_text
    assert_truthful(host)


@pytest.mark.parametrize("record", ["{damaged", "", '{"live": "green", "slots": {}}'])
def test_the_slot_the_proxy_serves_is_live_whatever_the_record_says(record: str) -> None:
    host = SlotHost(record)
    outcome, fleet = deploy_to(host)
    assert not isinstance(outcome, Exception), outcome
    descriptions = [op.description for op in fleet["h1"].operations]
    assert descriptions.index("read upstream") < descriptions.index("stop")
    assert host.running == {"blue": OLD, "green": NEW}  # blue, live, was never stopped
    assert host.record.live == "green"
    assert_truthful(host)


def test_a_proxy_left_on_both_slots_goes_to_the_live_one_before_the_other_is_stopped() -> None:
    host = SlotHost()
    host.running["green"] = "20260101T120000Z-kil1ed0"  # a canary whose deploy was killed
    host.upstream = [8001, 8002]
    order: list[tuple[str, list[int]]] = []

    def watch(op: Operation) -> Result | None:
        answer = host.respond(op)
        order.append((op.description, list(host.upstream)))
        return answer

    fleet = FakeFleet()
    fleet["h1"].respond(watch)
    env = environment(hosts=[Host("h1", "h1")], strategy=strategy(drain=0.01))
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)

    assert not isinstance(outcome, Exception), outcome
    assert ("stop", [8001]) in order  # nginx no longer sent to green when it was stopped
    assert order.index(("proxy weights", [8001])) < order.index(("stop", [8001]))
    assert_truthful(host)


def test_a_proxy_on_both_slots_with_no_record_of_the_live_one_stops_nothing() -> None:
    host = SlotHost('{"live": null, "slots": {}}')
    host.upstream = [8001, 8002]
    outcome, fleet = deploy_to(host)
    assert type(outcome) is DeployFailed, outcome
    assert "both slots" in str(outcome)
    descriptions = [op.description for op in fleet["h1"].operations]
    assert "stop" not in descriptions and "start" not in descriptions
    assert host.upstream == [8001, 8002] and host.running["blue"] == OLD


def test_a_rollback_with_a_damaged_record_never_stops_the_slot_nginx_serves() -> None:
    """Blue serves the last release, green still runs the one before, and the record is
    damaged: a rollback starts the release before on green (the idle slot), never on blue."""
    new_live = "20260101T120000Z-n3w0000"
    host = SlotHost("{damaged")
    host.running = {"blue": new_live, "green": OLD}
    log = [
        {"event": "deploy", "outcome": "success", "release": OLD, "current": OLD},
        {"event": "deploy", "outcome": "success", "release": new_live, "current": new_live},
    ]

    def respond(op: Operation) -> Result | None:
        if op.description == "lock":
            state = render_state(current=new_live, releases=[OLD, new_live], log=log)
            record = host.record_text.replace("\n", " ")
            text = state.replace("@@deploylib:slots\n", f"@@deploylib:slots\n|{record}\n")
            return Result(0, text)
        return host.respond(op)

    fleet = FakeFleet()
    fleet["h1"].respond(respond)
    env = environment(hosts=[Host("h1", "h1")], strategy=strategy())
    runner = Runner(
        env,
        PIPELINE,
        backend_for=fleet.backend_for,
        controller=fleet.controller,
        reporter=RecordingReporter(),
        lock_token=TOKEN,
    )
    outcome = runner.rollback(env.hosts)

    assert outcome.placement == {"h1": OLD}
    assert host.running == {"blue": new_live, "green": OLD}  # blue was never stopped
    assert host.record.live == "green"
    assert_truthful(host)


def test_a_release_the_proxy_went_to_is_never_stopped_when_it_cannot_be_put_back() -> None:
    """The proxy switched to green, then moving ``current`` failed; blue, the old slot, died
    meanwhile and does not start again. Green is what nginx sends every request to: the failed
    deploy (exit 4) must leave it running, and keep its release."""
    host = SlotHost()
    host.sick.add(8001)

    def respond(op: Operation) -> Result | None:
        if op.description.startswith("switch to"):
            return Result(1, stderr="No space left on device")
        if op.description == "start" and " blue " in f"{op.line} ":
            return Result(1, stderr="blue does not start")
        return host.respond(op)

    fleet = FakeFleet()
    fleet["h1"].respond(respond)
    env = environment(hosts=[Host("h1", "h1")], strategy=strategy())
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)

    assert isinstance(outcome, FleetInconsistent), outcome
    assert host.upstream == [8002] and host.running["green"] == NEW
    assert host.record.live == "green" and host.record.record("green").release == NEW
    assert "remove releases" not in [op.description for op in fleet["h1"].operations]


def test_a_record_that_cannot_be_written_stops_nothing() -> None:
    """A full disk: the idle slot still runs the release before (the instant rollback); the
    deploy fails before it stops it, and the record still says so, truthfully."""
    before = "20251231T000000Z-pr3v000"
    host = SlotHost(
        SlotState()
        .started("green", before)
        .switched("green", 0)
        .started("blue", OLD)
        .switched("blue", 0)
        .as_json()
    )
    host.running["green"] = before
    full = Result(1, stderr="could not write: No space left on device")
    host.fail["stage slots"] = full
    host.fail["record slots"] = full

    outcome, fleet = deploy_to(host)

    assert type(outcome) is DeployFailed, outcome
    assert "stop" not in [op.description for op in fleet["h1"].operations]
    assert host.running == {"blue": OLD, "green": before}
    assert_truthful(host)


def test_hostile_release_names_in_a_record_edited_by_hand_never_reach_a_shell() -> None:
    hostile = "$(touch /tmp/PWNED-deploylib); `id`"
    record = json.dumps(
        {
            "live": "blue",
            "slots": {
                "blue": {"release": OLD, "idle_since": None},
                "green": {"release": hostile, "idle_since": 0},
            },
        }
    )
    host = SlotHost(record)
    host.running["green"] = hostile
    outcome, fleet = deploy_to(host)
    assert not isinstance(outcome, Exception), outcome
    assert not any("PWNED" in op.line for op in fleet["h1"].operations)
    assert_truthful(host)


def test_the_upstream_file_is_read_by_a_real_shell_whatever_its_path(tmp_path: Path) -> None:
    file = tmp_path / "nginx $(touch PWNED) 'x'" / "app;`id`.conf"
    file.parent.mkdir()
    file.write_text("# by hand\nserver 127.0.0.1:8002 weight=10;\n  server 127.0.0.1:8001;\n")
    read = read_upstream_command(str(file))
    done = subprocess.run(["sh", "-c", read.line], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and upstream_ports(done.stdout) == {8001, 8002}
    assert not (tmp_path / "PWNED").exists()
    missing = read_upstream_command(str(tmp_path / "none.conf"))
    done = subprocess.run(["sh", "-c", missing.line], capture_output=True, text=True)
    assert done.returncode == 0 and upstream_ports(done.stdout) == set()


def slots_without_an_app(project: Project, strategy_lines: str) -> None:
    """A project whose dev environment deploys to this machine on blue-green slots, with
    ``strategy_lines`` in its strategy table; its slots start and stop nothing."""
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\n[environments.dev]\nhosts = ["local"]\n'
        'deploy_to = "target"\n[environments.dev.strategy]\nkind = "blue_green"\n'
        "ports = [8001, 8002]\n" + strategy_lines,
    )
    project.write(
        "pipelines/web.py",
        "from deploylib import Pipeline, build, push, switch\n"
        'pipeline = Pipeline(build("tar -czf {artifact} -C app ."), push(), '
        'switch(start="true {port}", stop="true"))\n',
    )
    project.write("app/app.py", "")


@pytest.mark.parametrize(
    "upstream_file",
    ["/nginx/{relase}.conf", "/nginx/{slot}.conf", "/nginx/app-{release}.conf"],
)
def test_an_upstream_file_that_is_not_one_file_is_refused_before_anything_runs(
    project: Project, upstream_file: str, tmp_path: Path
) -> None:
    """A typo'd placeholder, or one that differs per slot or release, would make the switch
    fail after the release started (or write a file nginx never reads): it is a config error."""
    slots_without_an_app(
        project,
        f'upstream_file = "{tmp_path}{upstream_file}"\n'
        'proxy_check = "true"\nproxy_reload = "true"\n',
    )
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "upstream_file" in done.stdout + done.stderr
    assert not project.target.exists()  # nothing was touched
    assert not (tmp_path / "nginx").exists()


def test_an_upstream_file_may_name_the_app_and_the_host() -> None:
    host = SlotHost()
    outcome, fleet = deploy_to(host, strategy(upstream_file="/etc/nginx/{app}-{host}.conf"))
    assert not isinstance(outcome, Exception), outcome
    [proxy] = [op for op in fleet["h1"].operations if op.description == "proxy switch"]
    assert "/etc/nginx/app-h1.conf" in proxy.line


# ---------------------------------------------------------------------------- real nginx

APP = """\
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
RELEASE = (HERE / "REVISION").read_text().split()[0]
if (SHARED / "LEAK").exists():  # an app that prints its secret as it fails to load
    import os
    import sys

    print(f"cannot load: API_KEY={os.environ.get('API_KEY')}", file=sys.stderr)
    raise SystemExit(3)
if (SHARED / "HOLD").exists():  # a start that takes its time: held until HOLD goes
    (SHARED / f"HELD-{RELEASE}").touch()
    for _ in range(1200):
        if not (SHARED / "HOLD").exists():
            break
        time.sleep(0.05)


KEY = __import__("os").environ.get("API_KEY", "")


def app(environ, start_response):
    sick = (SHARED / f"SICK-{RELEASE}").exists()
    broken = (HERE / "BROKEN").exists() or sick
    if environ.get("PATH_INFO") == "/health":
        status, body = ("500 Broken", f"broken {KEY}") if broken else ("200 OK", f"ok {RELEASE}")
    else:
        status, body = "200 OK", f"release {RELEASE}"
    data = (body + "\\n").encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"""


class Bed(Slots):
    """The blue-green project behind a real nginx, its app able to hold its start."""

    def configure_with(
        self, *, check: str | None = None, reload: str | None = None, timeout: float = 60
    ) -> None:
        """deploy.toml with other proxy commands and a shorter deadline for each command."""
        self.project.write(
            "deploy.toml",
            TOML.format(
                blue=self.ports["blue"],
                green=self.ports["green"],
                upstream=self.proxy.upstream,
                check=(check or self.proxy.check).replace('"', '\\"'),
                reload=(reload or self.proxy.reload).replace('"', '\\"'),
                extra="",
            ).replace("command_timeout = 60", f"command_timeout = {timeout:g}"),
        )

    @property
    def shared(self) -> Path:
        return self.project.target / "shared"

    def deployed(self) -> str:
        done = self.cli("deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        current = self.project.current()
        assert current is not None
        return current

    def slot_release(self, slot: str) -> str | None:
        slots = self.record()["slots"]
        assert isinstance(slots, dict)
        release: str | None = slots.get(slot, {}).get("release")
        return release

    def answers(self, slot: str) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.ports[slot]), timeout=1).close()
        except OSError:
            return False
        return True

    def assert_truthful(self) -> None:
        """The record names the slot nginx sends every request to, and what runs on each slot:
        a slot recorded with a release answers for it from that release's directory, a slot
        recorded stopped does not answer; nginx names no port nothing listens on."""
        record = self.record()
        live = record["live"]
        assert isinstance(live, str)
        assert upstream_servers(self.proxy) == [f"server 127.0.0.1:{self.ports[live]};"]
        for slot in ("blue", "green"):
            release = self.slot_release(slot)
            if release is None:
                assert not self.answers(slot), f"{slot} is recorded stopped, but answers"
            else:
                assert release in self.project.release_dirs(), (slot, release)
                assert self.answers(slot), f"{slot} is recorded running {release}, but is down"
        assert self.serves(self.slot_release(live))

    def leftovers(self) -> list[str]:
        """Files next to the upstream file that deploylib left there."""
        return sorted(p.name for p in self.proxy.upstream.parent.iterdir() if "deploylib" in p.name)

    def kill_strays(self) -> None:
        """Every process still running from this project's directory (a gunicorn that got
        away), ended by PID."""
        self.stop_all()
        root = str(self.project.root)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if root in cmdline and "gunicorn" in cmdline:
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    blue, green = free_port(), free_port()
    with nginx(tmp_path, blue) as proxy:
        made = Bed(tmp_path / "proj", proxy, blue, green)
        made.project.write("app/app.py", APP)
        try:
            yield made
        finally:
            with contextlib.suppress(OSError):
                (made.shared / "HOLD").unlink()
            made.kill_strays()


def poll(condition: object, process: subprocess.Popen[str], what: str, seconds: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, (what, process.communicate(timeout=5))
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def interrupted(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    """Send ``sig`` to the deploy, wait (bounded) for its end: its exit status and output."""
    process.send_signal(sig)
    out, err = process.communicate(timeout=90)
    return process.returncode, out + err


@pytest.mark.slow
def test_ctrl_c_during_the_start_leaves_the_old_slot_serving_and_the_record_true(
    bed: Bed, tmp_path: Path
) -> None:
    r1 = bed.deployed()
    (bed.shared / "HOLD").touch()
    events = tmp_path / "events.jsonl"
    deploy = start_cli(bed.project.root, "deploy", "--env", "dev", "--events", str(events))
    poll(lambda: any(bed.shared.glob("HELD-*")), deploy, "the start")
    code, output = interrupted(deploy)
    (bed.shared / "HOLD").unlink()

    assert code == 1, output
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.project.release_dirs() == {r1}
    assert bed.record()["live"] == "blue" and bed.slot_release("green") is None
    bed.assert_truthful()


@pytest.mark.slow
def test_ctrl_c_during_the_checks_stops_the_new_release_and_keeps_the_old_slot(
    bed: Bed, tmp_path: Path
) -> None:
    r1 = bed.deployed()
    bed.project.write("app/BROKEN", "")
    events = tmp_path / "events.jsonl"
    deploy = start_cli(bed.project.root, "deploy", "--env", "dev", "--events", str(events))
    event_of(events, deploy, "check.attempt")
    code, output = interrupted(deploy)

    assert code == 1, output
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.slot_release("green") is None and bed.pid("green") is None
    closed_within(bed.ports["green"], 10)
    bed.assert_truthful()


@pytest.mark.slow
def test_ctrl_c_during_a_weighted_bake_sends_everything_back_and_stops_the_canary(
    bed: Bed, tmp_path: Path
) -> None:
    r1 = bed.deployed()
    bed.configure("weight = 50\nbake = 60\nwait = 0.2\n")
    with Load(bed.proxy.port, max_requests=100_000, max_seconds=120) as load:
        load.wait_for_answers(10)
        events = tmp_path / "events.jsonl"
        deploy = start_cli(bed.project.root, "deploy", "--env", "dev", "--events", str(events))
        event_of(events, deploy, "bake")
        assert len(upstream_servers(bed.proxy)) == 2  # both slots, by weight
        started = time.monotonic()
        code, output = interrupted(deploy)
        assert time.monotonic() - started < 50, "the bake was not cut short"
        load.wait_for_answers(10)

    assert code == 1, output
    assert "interrupted" in output
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.slot_release("green") is None
    closed_within(bed.ports["green"], 10)
    bed.assert_truthful()
    assert load.failures == [], load.failures[:5]


@pytest.mark.slow
@pytest.mark.parametrize("record", ["{not json", "", '{"live": null, "slots": {}}'])
def test_a_damaged_or_emptied_record_never_stops_the_slot_nginx_serves(
    bed: Bed, record: str
) -> None:
    """slots.json says nothing true any more: the slot the proxy sends to is still live, and a
    deploy (here of a release that never becomes healthy) must not stop it."""
    r1 = bed.deployed()
    (bed.project.target / ".deploylib" / "slots.json").write_text(record)
    bed.project.write("app/BROKEN", "")

    broken = bed.cli("deploy")

    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.record()["live"] == "blue" and bed.slot_release("blue") == r1
    bed.assert_truthful()


@pytest.mark.slow
def test_a_record_edited_by_hand_to_name_the_wrong_live_slot_is_corrected_by_the_proxy(
    bed: Bed,
) -> None:
    bed.deployed()
    r2 = bed.deployed()  # green live, blue idle on r1
    path = bed.project.target / ".deploylib" / "slots.json"
    lie = json.loads(path.read_text())
    lie["live"] = "blue"
    path.write_text(json.dumps(lie))

    with Load(bed.proxy.port, max_requests=100_000, max_seconds=120) as load:
        load.wait_for_answers(10)
        r3 = bed.deployed()  # on blue: green, which nginx serves, is never stopped
        load.wait_for_answers(10)
    assert bed.serves(r3) and bed.record()["live"] == "blue"
    assert bed.slot_release("green") == r2
    bed.assert_truthful()
    assert load.failures == [], load.failures[:5]


@pytest.mark.slow
def test_after_a_deploy_killed_while_it_baked_the_next_one_never_leaves_nginx_on_a_dead_port(
    bed: Bed, tmp_path: Path
) -> None:
    """SIGKILL mid-canary leaves the upstream naming both slots. The next deploy stops the
    canary's slot to start its own release there: nginx must stop sending to it first, and a
    failure of that deploy must leave nginx on the old slot alone."""
    r1 = bed.deployed()
    bed.configure("weight = 50\nbake = 60\nwait = 0.2\n")
    events = tmp_path / "events.jsonl"
    deploy = start_cli(bed.project.root, "deploy", "--env", "dev", "--events", str(events))
    event_of(events, deploy, "bake")
    deploy.kill()
    deploy.communicate(timeout=30)
    assert len(upstream_servers(bed.proxy)) == 2
    unlocked = bed.cli("unlock", "--force", "--yes")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr

    bed.configure()
    bed.project.write("app/BROKEN", "")
    broken = bed.cli("deploy")

    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert bed.project.current() == r1 and bed.serves(r1)
    bed.assert_truthful()


@pytest.mark.slow
@pytest.mark.parametrize("hangs", ["check", "reload", "reload-after-reloading", "start"])
def test_a_hanging_proxy_command_or_start_ends_the_deploy_in_bounded_time_and_puts_it_back(
    bed: Bed, hangs: str
) -> None:
    """Each hangs once (the put-back's own run does not): the command's deadline cuts it off,
    the old slot serves on alone, nothing half-written is left next to the upstream file."""
    r1 = bed.deployed()
    flag = bed.project.root / "hung-once"
    hang = f"if [ ! -e {flag} ]; then touch {flag}; sleep 120; fi"
    if hangs == "check":
        bed.configure_with(check=f"{hang}; {bed.proxy.check}", timeout=3)
    elif hangs == "reload":
        bed.configure_with(reload=f"{hang}; {bed.proxy.reload}", timeout=3)
    elif hangs == "reload-after-reloading":
        bed.configure_with(reload=f"{bed.proxy.reload} && {hang}", timeout=3)
    else:
        bed.configure_with(timeout=3)
        (bed.shared / "HOLD").touch()  # the app's import (gunicorn --check-config) hangs

    started = time.monotonic()
    done = bed.project.cli("deploy", "--env", "dev", timeout=90)
    took = time.monotonic() - started

    assert done.returncode == 1, done.stdout + done.stderr
    assert "timed out" in done.stdout + done.stderr
    assert took < 60, f"{took:.1f} s"
    assert bed.project.current() == r1 and bed.serves(r1)
    assert bed.record()["live"] == "blue" and bed.slot_release("green") is None
    assert bed.leftovers() == []
    bed.assert_truthful()


SECRET = "s3cr3t-api-key-6d1f0b"


@pytest.mark.slow
def test_secrets_stay_out_of_the_output_the_events_and_the_records_of_slot_failures(
    bed: Bed, tmp_path: Path
) -> None:
    """The env file's secret is in the environment of the start and of the app: a start that
    prints it as it fails, checks whose failing answer holds it, and a proxy check that prints
    it (run through sh, the secret in its environment), never show it."""
    bed.project.write(".env", f"API_KEY={SECRET}\n")
    r1 = bed.deployed()
    seen: list[str] = []

    def failed_deploy(name: str, *args: str) -> None:
        events = tmp_path / f"{name}.jsonl"
        done = bed.cli("deploy", "--verbose", "--events", str(events), *args)
        assert done.returncode == 1, done.stdout + done.stderr
        seen.extend([done.stdout, done.stderr, events.read_text()])

    (bed.shared / "LEAK").touch()  # the start fails, printing the secret
    failed_deploy("start")
    (bed.shared / "LEAK").unlink()
    bed.project.write("app/BROKEN", "")  # its checks fail, the secret in every answer
    failed_deploy("checks")
    (bed.project.root / "app" / "BROKEN").unlink()
    leak = bed.project.root / "leak.sh"
    leak.write_text(f'echo "refused: $API_KEY {SECRET}" >&2; exit 1\n')
    bed.configure_with(check=f"sh {leak}")
    failed_deploy("proxy")

    assert bed.project.current() == r1 and bed.serves(r1)
    bed.assert_truthful()
    meta = bed.project.target / ".deploylib"
    seen += [(meta / "releases.jsonl").read_text(), (meta / "slots.json").read_text()]
    assert all(SECRET not in text for text in seen)
    assert "cannot load: API_KEY=***" in "".join(seen)  # it was there, masked
    assert "refused:" in "".join(seen)


def test_the_proxy_commands_get_the_env_file_variables_never_on_their_line() -> None:
    """A check or reload of the user's own (a reload through the proxy's API, with a token)
    gets the env-file variables as every user command does: in its environment."""
    host = SlotHost()
    settings = strategy(proxy_reload='curl -fsS -H "Authorization: $PROXY_TOKEN" http://proxy')
    fleet = FakeFleet()
    fleet["h1"].respond(host.respond)
    env = environment(
        hosts=[Host("h1", "h1")],
        strategy=settings,
        variables={"PROXY_TOKEN": Secret("t0ken-value"), "REGION": "eu"},
    )
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    assert not isinstance(outcome, Exception), outcome
    [proxy] = [op for op in fleet["h1"].operations if op.description == "proxy switch"]
    assert isinstance(proxy, Command)
    assert {k: reveal(v) for k, v in proxy.env.items()} == {
        "PROXY_TOKEN": "t0ken-value",
        "REGION": "eu",
    }
    assert "t0ken-value" not in proxy.line and "$PROXY_TOKEN" in proxy.line


def test_a_proxy_reload_reads_its_token_from_the_env_file_on_a_real_shell(
    project: Project, tmp_path: Path
) -> None:
    upstream = tmp_path / "nginx" / "demo.conf"
    calls = tmp_path / "reloads"
    slots_without_an_app(
        project,
        f'upstream_file = "{upstream}"\ndrain = 0\n'
        "proxy_check = 'test -n \"$PROXY_TOKEN\"'\n"
        f'proxy_reload = \'printf "%s\\\\n" "$PROXY_TOKEN" >> {calls}\'\n',
    )
    project.write(".env.dev", "PROXY_TOKEN=s3cret-t0ken\n")
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls.read_text() == "s3cret-t0ken\n"
    assert "s3cret-t0ken" not in done.stdout + done.stderr
    assert "server 127.0.0.1:800" in upstream.read_text()
