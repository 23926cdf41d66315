"""Every event deploylib emits validates against the schema (``deploylib.reporting.schema``),
every event of the schema is emitted by some run here, and docs/events.md documents each one.

The runs: real local deploys through the program (a success, a failed verify, a rollback, a
dry run, a deploy that waits for a lock, webhooks that answer and that are down), and deploys
of the strategies' own events against fake hosts (pauses, a canary's bake, a blue-green weighted
canary with a drain, a put-back)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from deploylib import Pipeline, build, http, push, switch, verify
from deploylib.commands import Command, Operation, Probe, Result
from deploylib.config import StrategySettings
from deploylib.hosts import Host
from deploylib.recipes import service
from deploylib.remote.reading import render_state
from deploylib.reporting import JsonLinesReporter
from deploylib.reporting.schema import MODELS, validate_line
from deploylib.slots import SlotState
from deploylib.testing import FakeFleet, deploy_with_fakes, environment
from tests.conftest import REPO, Project, Webhook

OLD = "20260101T000000Z-0ld0000"


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cli_lines(project: Project, webhook: Webhook, tmp_path: Path) -> list[str]:
    events = tmp_path / "events.jsonl"
    run = ["--events", str(events)]
    assert project.cli("rollback", "--env", "dev", *run).returncode == 1  # nothing to go back to
    assert project.cli("deploy", "--env", "dev", *run).returncode == 0
    assert project.cli("deploy", "--env", "dev", "--dry-run", *run).returncode == 0
    project.write("app/BROKEN", "")
    assert project.cli("deploy", "--env", "dev", *run).returncode == 1
    (project.root / "app" / "BROKEN").unlink()
    assert project.cli("deploy", "--env", "dev", *run).returncode == 0
    assert project.cli("rollback", "--env", "dev", *run).returncode == 0

    slow = project.start_slow_deploy(2)
    waited = project.cli("deploy", "--env", "dev", "--lock-wait", "60", *run)
    slow.communicate(timeout=60)
    assert waited.returncode == 0, waited.stdout + waited.stderr

    toml = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", toml + f'\n[notify]\nwebhook = "{webhook.url}"\n')
    assert project.cli("deploy", "--env", "dev", *run).returncode == 0
    webhook.close()
    assert project.cli("deploy", "--env", "dev", *run).returncode == 0
    return lines_of(events)


PIPELINE = Pipeline(
    build("make {artifact}"),
    push(),
    switch(restart="restart"),
    verify(http("http://{host_address}/health"), attempts=1, wait=0),
)
SLOT_PIPELINE = Pipeline(
    build("make {artifact}"),
    push(),
    switch(start="start {port}", stop="stop {slot}"),
    verify(http("http://{host_address}:{port}/health"), attempts=1, wait=0),
)


def fake_lines() -> list[str]:
    """Events of strategy runs against fake hosts, written as --events writes them."""
    out = io.StringIO()
    reporter = JsonLinesReporter(out)
    hosts = [Host(h, h) for h in ("h1", "h2", "h3")]

    def failing_on(name: str) -> FakeFleet:
        fleet = FakeFleet()

        def respond(op: Operation) -> Result | None:
            return Result(1, stderr="down") if isinstance(op, Probe) else None

        fleet[name].respond(respond)
        return fleet

    runs = [
        (StrategySettings(kind="rolling", batch=1, pause=0.01), PIPELINE, FakeFleet()),
        (StrategySettings(kind="canary", bake=0.05, wait=0.01), PIPELINE, FakeFleet()),
        (StrategySettings(kind="rolling", batch=1), PIPELINE, failing_on("h2")),
        (StrategySettings(kind="rolling", batch=1, max_fail=1), PIPELINE, failing_on("h2")),
    ]
    for strategy, pipeline, fleet in runs:
        _, recorded = deploy_with_fakes(
            environment(hosts=hosts, strategy=strategy), pipeline, fleet
        )
        for event in recorded.events:
            reporter.emit(event)

    # blue-green with a weight, one host whose green slot took traffic a moment ago
    fleet = FakeFleet()
    slots = SlotState().started("blue", OLD).switched("blue", 0)
    slots = slots.started("green", "20250101T000000Z-older00").switched("green", 1)
    slots = slots.switched("blue", 9e18)  # green idle "since" far ahead: its drain is waited

    def answer(op: Operation) -> Result | None:
        if op.description == "lock":
            entry = {"event": "deploy", "outcome": "success", "release": OLD, "current": OLD}
            return Result(0, render_state(current=OLD, releases=[OLD], log=[entry], slots=slots))
        return None

    fleet["h1"].respond(answer)
    strategy = StrategySettings(
        kind="blue_green",
        ports=[8001, 8002],
        upstream_file="/etc/nginx/up.conf",
        weight=10,
        bake=0.05,
        wait=0.01,
        drain=0.05,
    )
    env = environment(hosts=[Host("h1", "h1")], strategy=strategy)
    _, recorded = deploy_with_fakes(env, SLOT_PIPELINE, fleet)
    for event in recorded.events:
        reporter.emit(event)

    # a swarm service: the manager reports its tasks as swarm replaces them
    fleet = FakeFleet()

    def swarm(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.progress:
            return Result(0, "updating the service app\ntask app.1 node-1 Running Running\n")
        if isinstance(op, Command) and op.description == "push image":
            return Result(0, f"127.0.0.1:5000/app@sha256:{'0' * 64}\n")
        return None

    fleet.controller.respond(swarm)
    fleet["h1"].respond(swarm)
    env = environment(hosts=[Host("h1", "h1")], registry="127.0.0.1:5000", orchestrator="swarm")
    on_swarm = Pipeline(build(image="{app}:{release}", context="app"), push(), service())
    _, recorded = deploy_with_fakes(env, on_swarm, fleet)
    for event in recorded.events:
        reporter.emit(event)
    return out.getvalue().splitlines()


@pytest.fixture
def every_line(project: Project, webhook: Webhook, tmp_path: Path) -> list[str]:
    return cli_lines(project, webhook, tmp_path) + fake_lines()


def test_every_event_validates_and_every_kind_is_emitted(every_line: list[str]) -> None:
    seen = set()
    for line in every_line:
        event = validate_line(line)
        seen.add(event.event)
    assert seen == set(MODELS), f"never emitted: {set(MODELS) - seen}"


def test_a_run_has_one_deploy_id_and_its_end_says_how_it_went(
    project: Project, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    assert project.cli("deploy", "--env", "dev", "--events", str(events)).returncode == 0
    project.write("app/BROKEN", "")
    assert project.cli("deploy", "--env", "dev", "--events", str(events)).returncode == 1
    records = [json.loads(line) for line in lines_of(events)]
    ids = list(dict.fromkeys(r["deploy_id"] for r in records))
    assert len(ids) == 2  # one per run, on every line of it
    first = [r for r in records if r["deploy_id"] == ids[0]]
    second = [r for r in records if r["deploy_id"] == ids[1]]
    assert first[-1]["event"] == "deploy.ok" and first[-1]["outcome"] == "success"
    assert first[-1]["exit_code"] == 0 and first[-1]["seconds"] > 0
    assert second[-1]["event"] == "deploy.failed" and second[-1]["exit_code"] == 1
    assert second[-1]["placement"] == {"local": project.current()}
    failed = [r for r in second if r["event"] == "step.failed"]
    assert failed and failed[0]["step"] == "verify" and failed[0]["host"] == "local"
    locks = [r["event"] for r in second if r["event"].startswith("lock.")]
    assert locks == ["lock.taken", "lock.released"]


def test_docs_events_md_documents_every_event() -> None:
    text = (REPO / "docs" / "events.md").read_text()
    documented = set(re.findall(r"^### `([a-z.]+)`", text, re.M))
    assert documented == set(MODELS)
