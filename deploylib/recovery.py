"""What a failure undoes, decided by the phase the run reached, in one place (``Recovery.recover``),
and the error that ends the run, worded from what recovery found (``failure``, pure).

VALIDATE and BUILD touched no target: a ``ConfigError`` stays one (exit 2). LOCK changed
nothing on any target (the locks are released after). PREPARE removes the unfinished release;
SWITCH first reads back cut-off switches and puts every switched target back. Both record the
failure in the release log and run the ``on_failure`` steps. Whatever the error, once a target
was touched the run ends as a failure (exit 1), lost locks (3) or a split fleet (4)."""

from __future__ import annotations

from collections.abc import Sequence

from deploylib import records
from deploylib.blue_green import BlueGreen
from deploylib.errors import (
    ConfigError,
    DeployError,
    DeployFailed,
    FleetInconsistent,
    LockHeld,
    LockLost,
    StepFailed,
)
from deploylib.fleet import Target
from deploylib.pipeline import Pipeline
from deploylib.remote import reading as state_reading
from deploylib.remote import release as remote_release
from deploylib.run_state import Phase, Run
from deploylib.step_execution import StepExecution
from deploylib.whereabouts import Whereabouts


class Recovery:
    """Undoing a failed run of ``pipeline``, through ``steps``."""

    def __init__(
        self,
        run: Run,
        steps: StepExecution,
        pipeline: Pipeline,
        *,
        slots: BlueGreen | None = None,
    ) -> None:
        self.run = run
        self.steps = steps
        self.pipeline = pipeline
        #: blue-green: a target goes back by a proxy switch to the slot of its release
        self.slots = slots

    def recover(self, phase: Phase, exc: BaseException, event: str) -> DeployError:
        """Undo what ``phase`` requires after ``exc``; return the error that ends the run."""
        run = self.run
        run.cancelled.clear()  # the re-verify of the put-back release must run its checks
        reason = self.reason(exc)
        if isinstance(exc, StepFailed):
            exit_code = exc.result.exit_code if exc.result is not None else None
            run.emit(
                "step.failed",
                run.redact(exc.message),
                host=exc.host,
                step=exc.step,
                data={"exit_code": exit_code},
            )
        if phase in (Phase.VALIDATE, Phase.BUILD):
            if isinstance(exc, ConfigError):
                return exc
            return DeployFailed(f"{event} failed: {reason}; nothing was changed", {})
        if phase is Phase.LOCK:
            if isinstance(exc, LockHeld | DeployFailed | FleetInconsistent):
                return exc
            return DeployFailed(f"{event} failed: {reason}; nothing was changed", run.placement())
        if phase is Phase.RECORD:
            # what the run says of itself once recorded: a rollback that stays live though its
            # checks fail (DeployFailed), hosts it could not reach, a lock lost meanwhile
            if isinstance(exc, FleetInconsistent | LockLost | DeployFailed):
                return exc
            return DeployFailed(
                f"{event} failed: {reason}; every target is on the new release", run.placement()
            )
        broken: list[str] = []
        unwell: list[str] = []
        if phase is Phase.SWITCH:
            self.settle_uncertain()
            broken, unwell = self.put_back()
        if event == "deploy":
            if self.slots is not None:
                self.slots.stop_unwanted(run.release, run.targets)
            self.remove_unfinished()
        outcome = "rolled_back" if phase is Phase.SWITCH and event == "deploy" else "failed"
        records.record_all(run, event, outcome, run.moves or run.release, error=reason)
        self.run_on_failure_steps()
        lost = [t.name for t in run.targets if t.lock_lost]
        return failure(event, phase, reason, broken, unwell, lost, run.placement())

    def reason(self, exc: BaseException) -> str:
        """What went wrong, in a line without secrets."""
        redact = self.run.redact
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted"
        if isinstance(exc, LockLost | DeployFailed | FleetInconsistent):
            return redact(str(exc).split("\n", 1)[0])
        if isinstance(exc, DeployError):
            return redact(str(exc))
        return f"{exc.__class__.__name__}: {redact(str(exc))}"

    def settle_uncertain(self) -> None:
        """Targets whose switch was cut off (timed out, interrupted) may or may not have moved
        `current`: read it, where the host still answers, instead of guessing."""
        run = self.run

        def settle(target: Target) -> None:
            result = run.execute(target, state_reading.state_command(run.layout), "rollback")
            state = state_reading.parse_state(result.stdout, run.layout)
            if result.ok and state.read and state.current_kind in ("release", "absent"):
                target.moved_to(state.current)

        run.each(settle, [t for t in run.targets if t.uncertain and not t.unreachable])

    def put_back(self, targets: Sequence[Target] | None = None) -> tuple[list[str], list[str]]:
        """Return every switched target (of ``targets`` if given) to the release it had and
        re-verify it there.

        Returns the targets that could not be switched back (the fleet is inconsistent) and
        those that are back but whose restart or checks fail there too (consistent, unwell).
        A target whose lock was lost is not touched: it counts as not put back.
        """
        run, steps = self.run, self.steps
        revert = self.pipeline.revert_step()
        switch = steps.phases.switch
        verifies = [s for s in steps.phases.post if s.retry is not None]
        unwell: list[str] = []

        def put_back(target: Target) -> None:
            previous = target.state.current
            if previous is not None and previous not in target.state.releases:
                previous = None  # it pointed at a release that is gone: there is none to restore
            if target.lock_lost:
                if target.current == target.state.current and not target.uncertain:
                    return  # its switch was refused (its guard runs first): it never moved
                raise StepFailed("rollback", target.name, "the deploy lock here was lost")
            run.emit("revert", f"putting back {previous or '(no release)'}", host=target.name)
            if self.slots is not None and previous is None:
                self.slots.go_to(target, None, restoring=True)
                return
            if previous is None:
                unset = remote_release.switch_command(run.layout, None, target.token)
                result = run.execute(target, unset, "rollback")
                if not result.ok:
                    raise StepFailed("rollback", target.name, run.summary(result), result)
                target.moved_to(None)
                undo = switch.undo_step() if switch is not None else None
                if undo is not None:
                    steps.run_on(undo, target, run.release, restoring=True)
                return
            try:
                if self.slots is not None:
                    self.slots.go_to(target, previous, restoring=True)
                else:
                    steps.run_on(revert, target, previous, restoring=True)
            except StepFailed as exc:
                if target.current != previous or target.uncertain:
                    raise
                # back on the old release; only its restart failed: one release, unwell
                unwell.append(target.name)
                run.emit(
                    "warning",
                    f"back on {previous}, but its restart failed: {run.redact(exc.message)}",
                    host=target.name,
                )
                return
            try:
                for verify_step in verifies:
                    steps.run_on(verify_step, target, previous)
            except StepFailed as exc:
                unwell.append(target.name)
                run.emit(
                    "warning",
                    f"back on {previous}, which fails its checks too: {run.redact(exc.message)}",
                    host=target.name,
                )

        chosen = run.targets if targets is None else targets
        errors = run.each(put_back, [t for t in chosen if t.switched])
        for name, error in errors.items():
            run.emit("warning", f"putting back failed: {run.redact(str(error))}", host=name)
        return list(errors), sorted(unwell)

    def remove_unfinished(self, targets: Sequence[Target] | None = None) -> None:
        """Remove the new release where it is not live (nor maybe live), on every locked
        target or on those of ``targets``."""
        run = self.run
        chosen = run.locked() if targets is None else [t for t in targets if t.locked]

        def remove(target: Target) -> None:
            if target.current == run.release or target.uncertain:
                return  # live, or maybe live: never removed
            # a container release also loses its image (its container was stopped first)
            app = run.env.app if run.image else ""
            command = remote_release.remove_release_command(
                run.layout, [run.release], target.token, app=app
            )
            result = run.execute(target, command, "cleanup")
            if not result.ok:
                raise StepFailed("cleanup", target.name, run.summary(result), result)

        for name, error in run.each(remove, chosen).items():
            run.emit("warning", f"could not remove the unfinished release: {error}", host=name)
        for target in run.targets if targets is None else targets:
            if target.lock_lost:
                run.emit(
                    "warning",
                    f"left releases/{run.release} as it is: the deploy lock here was lost",
                    host=target.name,
                )

    def run_on_failure_steps(self) -> None:
        run = self.run
        for failure_step in self.pipeline.on_failure:
            try:
                self.steps.run_step(failure_step, run.locked())
            except Exception as exc:  # an on_failure hook must not mask the deploy's failure
                run.emit(
                    "warning",
                    f"on_failure step {failure_step.name!r} failed: {run.redact(str(exc))}",
                )


def failure(
    event: str,
    phase: Phase,
    reason: str,
    broken: Sequence[str],
    unwell: Sequence[str],
    lost: Sequence[str],
    placement: Whereabouts,
) -> DeployError:
    """The error that ends a run that failed in PREPARE or SWITCH, from what recovery found:
    hosts not put back (split fleet, exit 4), locks lost (exit 3), or every host where it was
    (exit 1), worded with ``reason``."""
    if broken:
        return FleetInconsistent(
            f"{event} failed ({reason}) and putting back failed on {', '.join(broken)}: "
            "targets are on different releases",
            placement,
        )
    if phase is Phase.PREPARE:
        what = "no target was switched; the unfinished release was removed"
    else:
        what = "every target is back on the release it had"
        if unwell:
            what += f" (which fails its checks too on {', '.join(unwell)})"
    if lost:
        return LockLost(
            f"{event} stopped: the deploy lock on {', '.join(lost)} was removed or taken "
            f"over by another deploy; {what} (where the lock was still held)",
            placement,
        )
    return DeployFailed(f"{event} failed: {reason}; {what}", placement)
