"""A dry run prints what would run and changes nothing, anywhere: no host, no webhook, no event
except to ``--events`` (each marked), and it says so at the end instead of claiming a deploy."""

from __future__ import annotations

import json
from pathlib import Path

from deploylib import actions
from deploylib.reporting import RecordingReporter
from tests.conftest import Project, Webhook


def test_a_dry_run_notifies_nobody_marks_its_events_and_says_nothing_changed(
    project: Project, webhook: Webhook, tmp_path: Path
) -> None:
    toml = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", toml + f'\n[notify]\nwebhook = "{webhook.url}"\n')
    events = tmp_path / "events.jsonl"

    result = project.cli("deploy", "--env", "dev", "--dry-run", "--events", str(events))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == "dry run: nothing changed"
    assert "deployed" not in result.stdout and "✓ " not in result.stdout.splitlines()[-1]
    assert webhook.received == []
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert written and all(e["dry_run"] is True for e in written), written
    assert [e["event"] for e in written][-1] == "deploy.ok"
    assert project.current() is None and not (project.target / "releases").exists()

    # the same project deploys for real: the webhook hears of that one, unmarked
    assert project.cli("deploy", "--env", "dev").returncode == 0
    assert [r["event"] for r in webhook.received] == ["deploy.start", "deploy.ok"]
    assert "dry_run" not in webhook.received[-1]


def test_a_dry_run_returns_an_outcome_that_placed_nothing(project: Project) -> None:
    loaded = actions.load(project.root / "deploy.toml", "dev")
    reporter = RecordingReporter()
    outcome = actions.deploy(loaded, reporter=reporter, revision="abc1234", dry_run=True)
    assert outcome.dry_run is True
    assert outcome.placement == {} and outcome.removed == {}
    assert project.current() is None
    assert all(e.data.get("dry_run") is True for e in reporter.events)
