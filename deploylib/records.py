"""After a run: a line in every target's release log, and cleanup of old releases (after a
successful deploy, with the unlock, one command per target: ``finish_all``). Neither is a
reason to undo a deploy: a failure of either is a warning."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from deploylib.errors import StepFailed
from deploylib.fleet import Target
from deploylib.remote import lock as remote_lock
from deploylib.remote import log as release_log
from deploylib.remote import release as remote_release
from deploylib.remote.log import LogEntry
from deploylib.remote.state import TargetState
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
        entry = _entry(run, target, event, outcome, release, error, now)
        command = release_log.record_command(run.layout, entry, target.token)
        result = run.execute(target, command, "record")
        if not result.ok:
            raise StepFailed("record", target.name, run.summary(result), result)
        target.recorded(_recorded(target, entry))

    recording = [
        t
        for t in run.locked()
        if (isinstance(release, str) or t.name in release) and (among is None or t in among)
    ]
    for name, exc in run.each(record, recording).items():
        run.emit("warning", f"could not write the release log: {run.redact(str(exc))}", host=name)


def _entry(
    run: Run,
    target: Target,
    event: str,
    outcome: str,
    release: str | Mapping[str, str],
    error: str | None,
    now: str,
) -> LogEntry:
    """``target``'s line in its release log. ``release``: the run's, or one per target name
    (a rollback's), with the revision its log knows for it."""
    if isinstance(release, str):
        mine, revision = release, run.revision
    else:
        mine = release[target.name]
        revision = revision_of(target.state, mine)
    return LogEntry(
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


def _recorded(target: Target, entry: LogEntry) -> TargetState:
    """What ``target``'s state is once ``entry`` is in its release log."""
    made = {entry.release} if target.prepared and entry.release else set()
    return replace(
        target.state,
        current=target.current,
        releases=target.state.releases | made,
        complete=target.state.complete | made,
        log=(*target.state.log, entry.as_dict()),
    )


def _doomed(run: Run, target: Target, state: TargetState) -> list[str]:
    """The releases ``state``'s log says are no longer needed; what keeps others is said."""
    if state.damaged:
        run.emit(
            "warning",
            f"cleanup skipped, every release kept: {state.log_problem()}; once the "
            f"line is checked and removed from {run.layout.log}, cleanup resumes",
            host=target.name,
        )
        return []
    unexplained = state.unexplained()
    if unexplained:
        run.emit(
            "warning",
            f"kept {', '.join(unexplained)}: not in the release log (left by an "
            "interrupted deploy, or made by hand); remove them once checked",
            host=target.name,
        )
    return state.removable(run.env.keep_releases)


#: the line a finishing command ends with: each part's exit code (record, cleanup, unlock)
FINISHED = "deploylib-finished"


def finish_all(
    run: Run,
    release: str,
    among: Sequence[Target],
    retire: Callable[[Target], None] = lambda _target: None,
    unretire: Callable[[Target], None] = lambda _target: None,
) -> dict[str, list[str]]:
    """A successful deploy's end on each target of ``among``, in one command there: its line
    in the release log; once that is written, the releases no longer needed removed; then the
    lock released (where this run took it). Each part fails alone, as the separate commands
    did: a failed record or cleanup is a warning, and a lock this did not release is released
    at the run's end as any other. By target, the releases that went. ``retire`` is called
    for each target whose lock the command releases, just before it (``FleetLock.retire``),
    ``unretire`` for one whose unlock then failed."""
    now = run.clock().isoformat(timespec="seconds")
    removed: dict[str, list[str]] = {}
    unlocked: list[str] = []

    def finish(target: Target) -> None:
        entry = _entry(run, target, "deploy", "success", release, None, now)
        state = _recorded(target, entry)
        doomed = _doomed(run, target, state)
        removed[target.name] = doomed
        token = target.token
        record = release_log.record_command(run.layout, entry, token)
        parts = [
            "r=0; c=0; u=0",
            f"( {record.script}\n) || r=$?",
        ]
        if doomed:
            cleanup = remote_release.remove_release_command(
                run.layout, doomed, token, app=run.env.app
            )
            parts.append(f'if [ "$r" -eq 0 ]; then ( {cleanup.script}\n) || c=$?; fi')
        if target.owns_lock:
            unlock = remote_lock.unlock_command(run.layout, run.lock_token)
            parts.append(f"( {unlock.script}\n) || u=$?")
        parts += [
            f'echo "{FINISHED} $r $c $u"',
            '[ "$r" -eq 0 ] && [ "$c" -eq 0 ] && [ "$u" -eq 0 ]',
        ]
        command = replace(record, script="\n".join(parts), description="record")
        if target.owns_lock:
            retire(target)
        result = run.execute(target, command, "record")
        # all three went well exactly when the command did (its last line says so)
        codes = (0, 0, 0) if result.ok else _finished(result.stdout)
        if codes is not None:
            if codes[2] == 0 and target.owns_lock:
                target.unlocked()
                unlocked.append(target.name)
            elif codes[2] != 0:
                unretire(target)
                run.emit(
                    "warning",
                    f"the lock stays until the run's end: {run.redact(run.summary(result))}",
                    host=target.name,
                )
            if codes[1] != 0:
                run.emit(
                    "warning",
                    f"cleanup failed: {run.redact(run.summary(result))}",
                    host=target.name,
                )
        if codes is None or codes[0] != 0:
            raise StepFailed("record", target.name, run.summary(result), result)
        target.recorded(state)

    for name, exc in run.each(finish, [t for t in among if t.locked]).items():
        run.emit("warning", f"could not write the release log: {run.redact(str(exc))}", host=name)
    if unlocked:
        run.emit(
            "lock.released",
            f"unlocked {len(unlocked)} host{'s' if len(unlocked) != 1 else ''}",
            data={"hosts": unlocked},
        )
    return removed


def _finished(stdout: str) -> tuple[int, int, int] | None:
    """The parts' exit codes from a finishing command's last line (None: it never got there:
    refused by its guard, cut off, unreachable)."""
    for line in reversed(stdout.splitlines()):
        words = line.split()
        if len(words) == 4 and words[0] == FINISHED and all(w.isdigit() for w in words[1:]):
            return int(words[1]), int(words[2]), int(words[3])
    return None


def clean_up(run: Run) -> dict[str, list[str]]:
    """Remove the releases each target's log says are no longer needed; by target, what went."""
    removed: dict[str, list[str]] = {}

    def clean(target: Target) -> None:
        doomed = _doomed(run, target, target.state)
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
