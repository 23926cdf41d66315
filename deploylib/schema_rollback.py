"""Before a rollback switches: what the live database has beyond the release gone back to.

The states come from the release log (``migrate(schema=...)`` records one with every deploy).
When the target release does not know every live migration, the rollback stops with nothing
changed and names them, unless the pipeline's ``migrate(undo=...)`` reverses them first (run
once, in the live release, which has the newer migrations' code) or the user accepts them
(``--yes``)."""

from __future__ import annotations

from deploylib import records, schema_state
from deploylib.commands import Result
from deploylib.errors import DeployFailed, StepFailed
from deploylib.fleet import Target
from deploylib.pipeline import Pipeline
from deploylib.rollback_target import RollbackPlan
from deploylib.run_state import Run
from deploylib.step_execution import StepExecution
from deploylib.steps.migrations import Migrate


def settle_schema(
    run: Run, steps: StepExecution, pipeline: Pipeline, plan: RollbackPlan, *, accept: bool
) -> None:
    logs = [t.state.log for t in run.targets if t.name in plan.moves]
    live = next((s for s in map(schema_state.recorded, logs) if s is not None), None)
    if live is None:
        return  # no migration state recorded: nothing to compare
    behind: dict[str, list[str]] = {}
    targets: dict[str, tuple[str, ...]] = {}
    for release in sorted(set(plan.moves.values())):
        known = next(
            (s for s in (schema_state.recorded(log, release) for log in logs) if s is not None),
            None,
        )
        if known is None:
            run.emit(
                "warning",
                f"no migration state is recorded for {release}: whether the live database "
                "has migrations it does not know cannot be told",
            )
            continue
        missing = schema_state.beyond(live, known)
        if missing:
            behind[release], targets[release] = missing, known
    if not behind:
        return
    listed = "; ".join(f"{r} does not know {', '.join(m)}" for r, m in behind.items())
    migrate = next((s for s in pipeline.flat() if isinstance(s, Migrate) and s.schema), None)
    if migrate is not None and migrate.undo and len(targets) == 1:
        ((release, known),) = targets.items()
        try:
            _undo(run, steps, migrate, live, known)
        except StepFailed as exc:
            raise _undo_failed(run, steps, migrate, plan, exc) from None
        run.schema = known
        run.emit("warning", f"reversed the migrations {release} does not know: {listed}")
        return
    if accept:
        run.schema = live
        run.emit("warning", f"the live database keeps migrations: {listed} (--yes)")
        return
    raise DeployFailed(
        f"cannot roll back, nothing changed: the live database has migrations the release "
        f"gone back to does not know: {listed}. Reverse them first (migrate(..., undo=...) in "
        "the pipeline), or roll back anyway with --yes",
        run.placement(),
    )


def _undo_failed(
    run: Run, steps: StepExecution, migrate: Migrate, plan: RollbackPlan, exc: StepFailed
) -> DeployFailed:
    """The undo failed part-way, perhaps: no host switched, but the database may have changed.
    What it holds now is read again and recorded, so the next rollback compares with it."""
    state = _read_state(run, steps, migrate)
    now = ""
    if state is not None:
        run.schema = state
        records.record_all(run, "rollback", "failed", plan.moves, error=exc.message)
        now = f"; it now has: {', '.join(state) or '(no migrations)'} (recorded)"
    return DeployFailed(
        f"rollback failed: undoing the migrations failed on {exc.host}: {run.redact(exc.message)}"
        f". No host was switched, but the database may be partly reversed{now}",
        run.placement(),
    )


def _read_state(run: Run, steps: StepExecution, migrate: Migrate) -> tuple[str, ...] | None:
    if not migrate.schema:
        return None
    script = schema_state.schema_script(migrate.schema)
    ran = _in_live_release(run, steps, migrate, script, "schema")
    if ran is None or not ran[1].ok:
        return None
    return tuple(run.redact(name) for name in schema_state.parse(migrate.schema, ran[1].stdout))


def _undo(
    run: Run, steps: StepExecution, migrate: Migrate, live: tuple[str, ...], known: tuple[str, ...]
) -> None:
    assert migrate.undo is not None
    script = schema_state.undo_script(migrate.undo, live, known)
    ran = _in_live_release(run, steps, migrate, script, "undo migrations")
    if ran is not None and not ran[1].ok:
        target, result = ran
        raise StepFailed("undo migrations", target.name, run.summary(result), result)


def _in_live_release(
    run: Run, steps: StepExecution, migrate: Migrate, script: str, description: str
) -> tuple[Target, Result] | None:
    """``script`` on the target ``migrate`` runs on (role ``db`` first), in its live release,
    as ``migrate``'s user; None when the rollback has no such target."""
    chosen = steps.targets_for(migrate, run.targets)
    if not chosen:
        return None
    ctx = steps.context(chosen[0])
    command = ctx.command(
        script, cwd=ctx.layout.current, description=description, sudo=migrate.sudo
    )
    return chosen[0], run.execute(chosen[0], command, "migrate")
