"""After a run: a line in every target's release log, and cleanup of old releases. Neither is
a reason to undo a deploy: a failure of either is a warning."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from deploylib.errors import StepFailed
from deploylib.fleet import Target
from deploylib.remote import log as release_log
from deploylib.remote import release as remote_release
from deploylib.remote.log import LogEntry
from deploylib.rollback_target import revision_of
from deploylib.run_state import Run


def record_all(
    run: Run,
    event: str,
    outcome: str,
    release: str | Mapping[str, str],
    *,
    error: str | None = None,
    among: Sequence[Target] | None = None,
) -> None:
    """Append to every locked target's release log (of ``among`` if given) what happened and
    what is live now. ``release``: the run's, or one per target name (a rollback's): then only
    those targets record, each with the revision its log knows for its release."""
    now = run.clock().isoformat(timespec="seconds")

    def record(target: Target) -> None:
        if isinstance(release, str):
            mine, revision = release, run.revision
        else:
            mine = release[target.name]
            revision = revision_of(target.state, mine)
        entry = LogEntry(
            event=event,
            outcome=outcome,
            release=mine,
            revision=revision,
            current=target.current,
            previous=target.state.current,
            user=run.user,
            controller=run.controller_name,
            time=now,
            error=run.redact(error) if error else None,
            extra={
                "seconds": round(time.monotonic() - run.started, 1),
                **({"schema": list(run.schema)} if run.schema is not None else {}),
                # a container release: the image it runs and the digest it was pushed as
                **(
                    {"image": run.image_ref, "digest": run.image_digest or None}
                    if run.image_ref and mine == run.release and event == "deploy"
                    else {}
                ),
            },
        )
        command = release_log.record_command(run.layout, entry, target.token)
        result = run.execute(target, command, "record")
        if not result.ok:
            raise StepFailed("record", target.name, run.summary(result), result)
        made = {mine} if target.prepared else set()
        target.recorded(
            replace(
                target.state,
                current=target.current,
                releases=target.state.releases | made,
                complete=target.state.complete | made,
                log=(*target.state.log, entry.as_dict()),
            )
        )

    recording = [
        t
        for t in run.locked()
        if (isinstance(release, str) or t.name in release) and (among is None or t in among)
    ]
    for name, exc in run.each(record, recording).items():
        run.emit("warning", f"could not write the release log: {run.redact(str(exc))}", host=name)


def clean_up(run: Run) -> dict[str, list[str]]:
    """Remove the releases each target's log says are no longer needed; by target, what went."""
    removed: dict[str, list[str]] = {}

    def clean(target: Target) -> None:
        state = target.state
        if state.damaged:
            run.emit(
                "warning",
                f"cleanup skipped, every release kept: {state.log_problem()}; once the "
                f"line is checked and removed from {run.layout.log}, cleanup resumes",
                host=target.name,
            )
            removed[target.name] = []
            return
        unexplained = state.unexplained()
        if unexplained:
            run.emit(
                "warning",
                f"kept {', '.join(unexplained)}: not in the release log (left by an "
                "interrupted deploy, or made by hand); remove them once checked",
                host=target.name,
            )
        doomed = state.removable(run.env.keep_releases)
        removed[target.name] = doomed
        if doomed:
            command = remote_release.remove_release_command(
                run.layout, doomed, target.token, app=run.env.app
            )
            result = run.execute(target, command, "cleanup")
            if not result.ok:
                raise StepFailed("cleanup", target.name, run.summary(result), result)

    for name, error in run.each(clean, run.locked()).items():
        run.emit("warning", f"cleanup failed: {run.redact(str(error))}", host=name)
    return removed
