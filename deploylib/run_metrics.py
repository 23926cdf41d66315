"""A run's metrics, once it ended (``Runner._end``, after the locks are released and before the
outcome is reported): which outcome it counts as, which release the environment now runs, how
long it took; published by ``deploylib.metrics`` to the environment's ``metrics_file`` and
``pushgateway``, whose problems are warnings.

The outcome follows the exit code, and the release log's words where exit 1 has two meanings:

========== ==== =====================================================================
outcome    exit the run
========== ==== =====================================================================
success    0    every host on the new release (a rollback: on the release gone back to)
failed     1    failed before any host switched: nothing changed (a rollback: failed, or
                its checks fail on the release gone back to)
rolled_back 1   a deploy that failed after switching: every switched host was put back
split      4    hosts left on different releases
locked     3    another deploy held the lock, or this one lost it
========== ==== =====================================================================

A run refused as bad config or usage (exit 2) is no deploy and counts nowhere; a dry run writes
and pushes nothing. The live release is the one every host the run worked on is on, as far as it
knows (``Run.placement``): unchanged when it knows nothing new (locked out, a host it could not
read), none when they differ.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from deploylib.errors import ConfigError, DeployError
from deploylib.rollback_target import revision_of
from deploylib.run_state import Phase, Run

if TYPE_CHECKING:  # prometheus-client is imported only when a run has metrics to publish
    from deploylib.metrics import LiveRelease

__all__ = ["outcome_of", "publish"]


def outcome_of(event: str, phase: Phase, failure: DeployError | None, run: Run) -> str | None:
    """The outcome a run counts as (``None``: it does not count: bad config, exit 2)."""
    if failure is None:
        return "success"
    if isinstance(failure, ConfigError):
        return None
    if failure.exit_code == 3:
        return "locked"
    if failure.exit_code == 4:
        return "split"
    put_back = phase is Phase.SWITCH or (
        phase is Phase.RECORD and any(t.left_behind is not None for t in run.targets)
    )
    return "rolled_back" if event == "deploy" and put_back else "failed"


def publish(run: Run, event: str, phase: Phase, failure: DeployError | None) -> None:
    """Count the run in the environment's metrics; each problem is a warning."""
    env = run.env
    if run.dry or not (env.metrics_file or env.pushgateway):
        return
    outcome = outcome_of(event, phase, failure, run)
    if outcome is None:
        return
    try:
        from deploylib import metrics

        record = metrics.RunRecord(
            app=env.app,
            env=env.name,
            kind="deploy" if event == "deploy" else "rollback",
            outcome=outcome,
            seconds=time.monotonic() - run.started,
            finished_at=run.clock().timestamp(),
            live=None if outcome == "locked" else _live(run),
        )
        warnings = metrics.publish(record, textfile=env.metrics_file, pushgateway=env.pushgateway)
    except Exception as exc:  # metrics never fail a run, nor keep its outcome from being said
        warnings = [f"metrics: not published: {exc.__class__.__name__}: {exc}"]
    for warning in warnings:
        run.emit("warning", run.redact(warning))


def _live(run: Run) -> LiveRelease | None:
    """The release the run's hosts are all on (``None``: not known)."""
    from deploylib.metrics import NO_SINGLE_RELEASE, LiveRelease

    where = run.placement()
    if not where.releases or where.doubts:
        return None
    releases = set(where.releases.values())
    if len(releases) != 1 or None in releases:
        return NO_SINGLE_RELEASE
    (release,) = releases
    assert release is not None
    if release == run.release:
        return LiveRelease(release, run.revision)
    states = [t.state for t in run.targets if t.state.read]
    revisions = [revision_of(state, release) for state in states]
    known = [r for r in revisions if r != "unknown"]
    return LiveRelease(release, known[0] if known else "unknown")
