"""Random sequences of deploys, failing deploys and rollbacks keep the on-disk invariants."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylib import DeployFailed
from deploylib.backends.local import LocalBackend
from deploylib.remote.layout import Layout
from deploylib.remote.reading import parse_state, state_command
from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project

pytestmark = pytest.mark.slow

ACTIONS = st.sampled_from(["deploy", "fail_prepare", "fail_verify", "rollback", "rollback_to"])


def check_invariants(project: Project, expected_current: str | None, keep: int) -> None:
    target = project.target
    current = project.current()
    assert current == expected_current
    dirs = project.release_dirs()
    if current is not None:
        # current points to a complete release
        assert (target / "releases" / current / "REVISION").read_text().startswith(current)
        assert current in dirs
    log = project.log()
    if log:
        assert log[-1]["current"] == current  # the log's last word matches the disk
    deployed = [e["release"] for e in log if e["event"] == "deploy" and e["outcome"] == "success"]
    assert dirs <= set(deployed)  # no unfinished or failed release left behind
    state = parse_state(LocalBackend().run(state_command(Layout(str(target)))).stdout)
    rollback_target = state.rollback_target()
    newest = [r for r in dict.fromkeys(reversed(deployed)) if r in dirs][:keep]
    assert dirs <= set(newest) | {current, rollback_target}
    assert not (target / ".deploylib" / "lock").exists()
    uploads = target / ".deploylib" / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=8), keep=st.integers(min_value=1, max_value=3)
)
def test_random_sequences_keep_the_invariants(actions: list[str], keep: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "proj")
        project.write(
            "deploy.toml", BASIC_TOML.replace("keep_releases = 3", f"keep_releases = {keep}")
        )
        project.write("pipelines/web.py", BASIC_PIPELINE)
        project.write("app/index.txt", "hello\n")
        current: str | None = None
        history: list[str] = []  # successful deploys, in order
        for number, action in enumerate(actions):
            for marker in ("FAIL_PREPARE", "BROKEN"):
                (project.root / "app" / marker).unlink(missing_ok=True)
            if action == "deploy":
                outcome, _ = project.deploy(revision=f"rev{number}")
                if current is not None:
                    # cleanup never deletes what a rollback would go back to
                    assert current in project.release_dirs()
                current = outcome.release
                history.append(current)
            elif action in ("fail_prepare", "fail_verify"):
                project.write(f"app/{'FAIL_PREPARE' if action == 'fail_prepare' else 'BROKEN'}", "")
                try:
                    project.deploy(revision=f"bad{number}")
                except DeployFailed as failure:
                    assert failure.placement == {"local": current}
                else:
                    raise AssertionError("a failing deploy succeeded")
            else:
                to = None
                if action == "rollback_to":
                    on_disk = [r for r in history if r in project.release_dirs()]
                    if not on_disk:
                        continue
                    to = on_disk[0]
                try:
                    current = project.rollback(to=to).release
                except DeployFailed as failure:
                    assert failure.placement == {"local": current}
            check_invariants(project, current, keep)
