"""Runs a pipeline over targets: the order of a deploy and of a rollback, phase by phase.

Fleet semantics, for one target as for many, by ``Phase``:

1. VALIDATE: every template of every step is filled for every host before anything runs;
2. BUILD: local steps (``build``) run once on this machine; nothing remote is touched yet;
3. LOCK: every target is locked, all or nothing (``LockHeld``, exit 3), and its state is read;
   a layout deploylib did not make is refused before anything changes;
4. PREPARE: prepare steps run on every target; a failure anywhere removes the unfinished
   release everywhere and switches nobody (``DeployFailed``, exit 1);
5. SWITCH: the strategy switches targets and the steps after ``switch`` (``verify``) run; a
   failure puts every switched target back on the release it had and re-verifies it (exit 1),
   or reports which target is on what if that failed (``FleetInconsistent``, exit 4);
6. RECORD: the outcome is appended to every target's release log and old releases are cleaned
   up; then the locks are released (also when interrupted), the run is counted in the metrics
   (``run_metrics``) and, last, the outcome is reported.

The parts: ``fleet_lock`` (the locks), ``step_execution`` (steps on targets), ``records`` (the
release log, cleanup), ``recovery`` (what a failure undoes, by phase, in one place) and
``signal_scope`` (when a signal may cut the run short), sharing one ``run_state.Run``; the
rollback target is ``rollback_target``'s pure choice. Every change deploylib makes to a target
after LOCK checks the lock's token first: a deploy that lost its lock stops changing that target
and ends with ``LockLost`` (exit 3).

Longer than the other modules on purpose: a deploy and a rollback are each read here, whole and
in order; everything they call lives in the modules named above.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from deploylib import locks, records, run_metrics
from deploylib.backends.base import Backend
from deploylib.blue_green import BlueGreen
from deploylib.config import Environment
from deploylib.errors import (
    ConfigError,
    DeployError,
    DeployFailed,
    FleetInconsistent,
    PlacedError,
    StepFailed,
    VerifyFailed,
)
from deploylib.fleet import OpenedAhead, Target
from deploylib.fleet_lock import FleetLock
from deploylib.hosts import LOCAL, Host
from deploylib.pipeline import Pipeline, rehearse
from deploylib.recovery import Recovery
from deploylib.remote import layout as remote_layout
from deploylib.reporting import Reporter
from deploylib.rollback_target import RollbackPlan, revision_of, rollback_plan
from deploylib.run_state import Clock, Phase, Run
from deploylib.schema_rollback import settle_schema
from deploylib.signal_scope import SignalScope
from deploylib.step_execution import StepExecution
from deploylib.steps import Step
from deploylib.strategies import Strategy, strategy_for
from deploylib.whereabouts import Whereabouts

BackendFactory = Callable[[Host], Backend]

__all__ = ["BackendFactory", "Clock", "Outcome", "Phase", "Runner", "utc_now"]


@dataclass(frozen=True)
class Outcome:
    """What a successful run did: the release, where each target ended (the release of each)
    and the releases removed from each. A dry run changed nothing: it placed and removed
    nothing, and says so with ``dry_run``."""

    release: str
    placement: dict[str, str | None]
    removed: dict[str, list[str]]
    dry_run: bool = False


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runner:
    """One deploy or rollback of one environment. Use ``deploy()`` or ``rollback()`` once."""

    def __init__(
        self,
        env: Environment,
        pipeline: Pipeline,
        *,
        backend_for: BackendFactory,
        controller: Backend,
        reporter: Reporter,
        revision: str = "unknown",
        clock: Clock = utc_now,
        parallel: int | None = None,
        strategy: Strategy | None = None,
        workdir: Path | None = None,
        heartbeat: float = locks.HEARTBEAT_INTERVAL,
        lock_token: str | None = None,
        lock_wait: float = 0.0,
        user: str | None = None,
    ) -> None:
        self.env = env
        self.pipeline = pipeline
        self.backend_for = backend_for
        self.controller = controller
        self.strategy = strategy or strategy_for(env.strategy)
        self.workdir = workdir
        #: seconds a deploy waits for locks another deploy holds (``--lock-wait``)
        self.lock_wait = lock_wait
        self.run = Run(
            env=env,
            reporter=reporter,
            clock=clock,
            # how many targets are worked on at once: the environment's ssh.parallel by default
            parallel=max(1, parallel if parallel is not None else env.ssh.parallel),
            revision=revision,
            dry=controller.dry,
        )
        self.run.image = pipeline.image
        if user:
            self.run.user = user  # who deploys, for the release log
        self.run.output_live = bool(getattr(reporter, "wants_live_output", False))
        self.run.output_kept = bool(getattr(reporter, "wants_output", False))
        self.lock = FleetLock(self.run, heartbeat=heartbeat, token=lock_token)
        self.steps = StepExecution(self.run, pipeline.phases(), Target(LOCAL, controller))
        switch = self.steps.phases.switch
        #: blue-green: the slot switches (None: the strategy switches ``current`` in place)
        self.slots = (
            BlueGreen(self.run, self.steps, switch, self._wait)
            if env.strategy.kind == "blue_green" and switch is not None and switch.start
            else None
        )
        self.recovery = Recovery(self.run, self.steps, pipeline, slots=self.slots)
        self.signals = SignalScope()

    @property
    def targets(self) -> list[Target]:
        return self.run.targets

    # ------------------------------------------------------------------ deploy

    def deploy(self, hosts: Sequence[Host]) -> Outcome:
        run = self.run
        run.release = remote_layout.make_release_id(run.clock(), run.revision)
        run.emit(
            "deploy.start",
            f"deploy {self.env.app} {run.release} (revision {run.revision}) to "
            f"{self.env.name}: {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            + (" [dry run]" if self.controller.dry else ""),
            data={
                "release": run.release,
                "revision": run.revision,
                "env": self.env.name,
                "hosts": [h.name for h in hosts],
            },
        )
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="deploylib-"))
        run.artifact = str(workdir / f"{self.env.app}-{run.release}.tar.gz")
        phase = Phase.VALIDATE
        cause: BaseException | None = None
        removed: dict[str, list[str]] = {}
        with self.signals.active():
            try:
                rehearse(
                    self.pipeline,
                    self.env,
                    hosts,
                    release=run.release,
                    revision=run.revision,
                    artifact=run.artifact,
                )
                phase = Phase.BUILD
                # the targets' connections open while the build runs; nothing is sent to
                # them before the lock
                opening = OpenedAhead(lambda: self._connect(hosts), run.parallel)
                try:
                    self.steps.run_local_steps()
                finally:
                    run.targets = opening.targets()
                phase = Phase.LOCK
                run.reads_manifests = any(s.reads_manifest for s in self.steps.phases.prepare)
                self.lock.take(wait=self.lock_wait)
                self._check_targets()
                phase = Phase.PREPARE
                for prepare_step in self.steps.phases.prepare:
                    self.steps.run_step(prepare_step, run.targets)
                for target in run.targets:
                    target.release_prepared()
                phase = Phase.SWITCH
                self._go_live(run.release, self.steps.phases.switch)
                phase = Phase.RECORD
                # every target is live and verified: what follows cannot be undone, nor need be
                self.signals.finishing("recording the deploy")
                behind = [t for t in run.targets if t.left_behind is not None]
                on_new = [t for t in run.targets if t.left_behind is None]
                if not behind and not run.dry:
                    # every target on the new release: its record, cleanup and unlock are
                    # one command there
                    removed = records.finish_all(
                        run, run.release, on_new, self.lock.retire, self.lock.unretire
                    )
                else:
                    records.record_all(run, "deploy", "success", run.release, among=on_new)
                if behind:
                    for target in behind:
                        records.record_all(
                            run,
                            "deploy",
                            "rolled_back",
                            run.release,
                            error=target.left_behind,
                            among=[target],
                        )
                    self.recovery.remove_unfinished(behind)
                if behind or run.dry:
                    removed = records.clean_up(run)
                self.lock.check_lost_after("deployed")
                if behind:
                    raise _left_behind(run, behind)
            except BaseException as exc:
                self.signals.failed()  # first: a second Ctrl-C must not cut the clean-up
                cause = exc
            try:
                where = self._end("deploy", phase, cause)
            finally:
                if self.workdir is None:
                    shutil.rmtree(workdir, ignore_errors=True)
            if run.dry:
                run.emit("deploy.ok", "dry run: nothing changed", data={"release": run.release})
                return Outcome(run.release, {}, {}, dry_run=True)
            run.emit(
                "deploy.ok",
                f"deployed {run.release} to {self.env.name}: "
                + ", ".join(f"{h} → {r}" for h, r in where.releases.items())
                + "".join(f"\n  verified: {line}" for line in run.verified),
                data={
                    "release": run.release,
                    **where.as_data(),
                    "verified": run.verified,
                    **run.ending("success"),
                },
            )
            return Outcome(run.release, where.releases, removed)

    # ------------------------------------------------------------------ rollback

    def rollback(
        self,
        hosts: Sequence[Host],
        to: str | None = None,
        *,
        verify: bool = True,
        accept_schema: bool = False,
    ) -> Outcome:
        """Undo the last deploy (each target it made current back to what it ran before), or
        put every target on ``to``. Checks that fail on the release gone back to are reported
        (exit 1) but never undo the rollback; ``verify=False`` skips them. A release that does
        not know every migration of the live database is gone back to only with
        ``accept_schema`` or the pipeline's ``migrate(undo=...)`` (see ``schema_rollback``)."""
        run = self.run
        if to is not None and not remote_layout.is_release_id(to):
            raise ConfigError(
                f"not a release id: {to!r} (expected YYYYmmddTHHMMSSZ[-rev])", key="--to"
            )
        run.emit(
            "rollback.start",
            f"rollback {self.env.app} on {self.env.name}" + (f" to {to}" if to else ""),
            data={"to": to, "hosts": [h.name for h in hosts]},
        )
        phase = Phase.LOCK
        cause: BaseException | None = None
        with self.signals.active():
            try:
                run.targets = self._connect(hosts)
                self.lock.take(skip_unreachable=True)
                self._check_targets(new_release=False)
                plan = rollback_plan({t.name: t.state for t in run.targets}, to)
                if plan.problems:
                    raise DeployFailed(
                        "cannot roll back, nothing changed:\n  " + "\n  ".join(plan.problems),
                        run.placement(),
                    )
                run.release = plan.release  # '' when the targets go back to several
                run.moves = plan.moves
                if plan.release:
                    first = next(t for t in run.targets if t.name in plan.moves)
                    run.revision = revision_of(first.state, plan.release)
                if plan.split:
                    run.emit("warning", _split_warning(plan))
                settle_schema(run, self.steps, self.pipeline, plan, accept=accept_schema)
                phase = Phase.SWITCH
                unwell = self._go_back(plan, verify=verify)
                phase = Phase.RECORD
                self.signals.finishing("recording the rollback")
                # it happened, and stays: a success, with what fails on it said
                error = "stays live, but fails there: " + "; ".join(unwell) if unwell else None
                records.record_all(run, "rollback", "success", plan.moves, error=error)
                self.lock.check_lost_after("rolled back")
                gone_to = plan.release or "the releases they ran before"
                if run.unreachable:
                    names = ", ".join(t.name for t in run.unreachable)
                    raise FleetInconsistent(
                        f"rolled back to {gone_to} where hosts could be reached; "
                        f"{names} could not be reached and did not change",
                        run.placement(),
                    )
                if unwell:
                    raise DeployFailed(
                        f"rolled back to {gone_to}, and it stays live, but it fails there:\n  "
                        + "\n  ".join(unwell),
                        run.placement(),
                    )
            except BaseException as exc:
                self.signals.failed()
                cause = exc
            where = self._end("rollback", phase, cause)
            moved = ", ".join(f"{h} → {r or '(no release)'}" for h, r in where.releases.items())
            run.emit(
                "rollback.ok",
                f"rolled back {self.env.name} to {run.release}"
                if run.release and len(set(where.releases.values())) == 1
                else f"rolled back {self.env.name}: {moved}",
                data={"release": run.release, **where.as_data(), **run.ending("success")},
            )
            return Outcome(run.release, where.releases, {})

    # ------------------------------------------------------------------ setup

    def setup(self, hosts: Sequence[Host], work: Callable[[Target], None]) -> dict[str, str]:
        """``work`` on every target under the fleet's lock (taken all or nothing), then a
        ``setup`` line in each target's release log; the errors, worded, by target name."""
        run = self.run
        errors: dict[str, BaseException] = {}
        with self.signals.active():
            try:
                run.targets = self._connect(hosts)
                self.lock.take()
                errors = run.each(work, run.targets)
                self.signals.finishing("recording the setup")
                live = {t.name: t.state.current or "" for t in run.locked()}
                worded = "; ".join(f"{n}: {run.redact(str(e))}" for n, e in errors.items())
                outcome = "failed" if errors else "success"
                records.record_all(run, "setup", outcome, live, error=worded or None)
            except BaseException:
                self.signals.failed()
                raise
            finally:
                self.signals.finishing("releasing the locks")
                self.lock.release()
                for target in run.targets:
                    target.backend.close()
        return {name: run.redact(str(exc)) for name, exc in errors.items()}

    # ------------------------------------------------------------------ the parts in order

    def _connect(self, hosts: Sequence[Host]) -> list[Target]:
        return [Target(host, self.backend_for(host)) for host in hosts]

    def _check_targets(self, *, new_release: bool = True) -> None:
        """Refuse, before anything changes, targets whose layout deploylib did not make, and a
        release id that exists already; warn about what the state read says is odd."""
        run = self.run
        problems = []
        for target in run.targets:
            state = target.state
            problem = state.layout_problem(run.layout)
            if problem:
                problems.append(f"{target.name}: {problem}")
            elif new_release and run.release in state.releases | state.mentioned():
                problems.append(
                    f"{target.name}: release {run.release} already exists (two deploys of one "
                    "revision within a second?); deploy again"
                )
            if state.current and state.current not in state.releases:
                run.emit(
                    "warning",
                    f"current points at {state.current}, which is missing: a failed deploy "
                    "here leaves no current",
                    host=target.name,
                )
        if problems:
            raise DeployFailed(
                "refusing to go on, nothing was changed:\n  " + "\n  ".join(problems),
                run.placement(),
            )

    def _go_live(self, release: str, switch_step: Step | None) -> None:
        """Switch targets batch by batch, running the steps after ``switch`` after each batch,
        paced by the strategy: a ``pause`` before each later batch, a ``bake`` of the first."""
        run, steps = self.run, self.steps
        if switch_step is None:
            for post_step in steps.phases.post:
                steps.run_step(post_step, run.targets)
            return
        pacing = self.strategy.pacing
        for index, batch in enumerate(self.strategy.batches(run.targets)):
            if index and pacing.pause:
                run.emit("pause", f"pause {pacing.pause:g} s before the next batch")
                self._wait(pacing.pause)
            # a lock lost on any target stops the deploy before any switch: checked here, or,
            # when the push just checked it everywhere as it ended, by the push. A loss after
            # that is refused by each switch's own guard, and the switched are put back
            confirmed = index == 0 and self._push_checked_locks()
            self.lock.check(run.targets, confirmed=confirmed)
            if self.slots is not None:
                self._go_live_on_slots(self.slots, batch, release)
                continue
            hooks = self.env.strategy
            if isinstance(hooks.drain, str):
                run.drained = list(batch)
                self._hook(hooks.drain, batch, "drain")
            going = self._within_budget(steps.try_step(switch_step, batch, release=release), batch)
            for post_step in steps.phases.post:
                errors = steps.try_step(post_step, going, release=release)
                going = self._within_budget(errors, going)
            if index == 0 and pacing.bake and release == run.release:
                self._bake(batch, release, pacing.bake, pacing.bake_wait)
            if hooks.undrain is not None:
                self._hook(hooks.undrain, batch, "undrain")
                run.drained = []

    def _push_checked_locks(self) -> bool:
        """The last step before the switch ended on every target by checking the lock there
        (``Step.ends_with_lock_check``), with nothing run after it."""
        prepare = self.steps.phases.prepare
        last = prepare[-1] if prepare else None
        return (
            last is not None
            and last.ends_with_lock_check
            and last.placement == "each"
            and not last.roles
            and not last.after
        )

    def _go_live_on_slots(self, slots: BlueGreen, batch: list[Target], release: str) -> None:
        """Blue-green: start on each target's idle slot, check that slot, then (with a weight)
        send it a share of the requests and bake, then switch each target's proxy to it."""
        steps, pacing = self.steps, self.strategy.pacing
        going = self._within_budget(slots.start(batch, release), batch)
        for post_step in steps.phases.post:
            going = self._within_budget(steps.try_step(post_step, going, release=release), going)
        weight = self.env.strategy.weight
        if weight is not None:
            going = self._within_budget(slots.weigh(going, release, weight), going)
            if pacing.bake:
                self._bake(going, release, pacing.bake, pacing.bake_wait)
        self._within_budget(slots.go_live(going, release), going)

    def _within_budget(self, errors: dict[str, BaseException], batch: list[Target]) -> list[Target]:
        """The targets of ``batch`` that go on. Those that failed (``errors``) are put back
        alone while the strategy's ``max_fail`` allows it: each is on the release it had, did
        not lose its connection, and the failures so far stay within the budget. Otherwise
        the first error is raised, and every switched target is put back."""
        if not errors:
            return batch
        run = self.run
        failed = [t for t in batch if t.name in errors]
        first = errors[failed[0].name] if failed else next(iter(errors.values()))
        budget = self.strategy.pacing.failure_budget(len(run.targets))
        left = sum(t.left_behind is not None for t in run.targets) + len(failed)
        if left > budget or any(
            t.uncertain or t.unreachable or not isinstance(errors[t.name], StepFailed)
            for t in failed
        ):
            raise first
        for target in failed:
            run.emit(
                "warning",
                f"failed ({run.redact(str(errors[target.name]))}); putting it back alone: "
                f"{left} of the {budget} failures max_fail allows",
                host=target.name,
            )
        broken, unwell = self.recovery.put_back(failed)
        if broken:
            raise first
        for target in failed:
            reason = run.redact(str(errors[target.name]))
            if target.name in unwell:
                reason += "; back on the release it had, which fails its checks too"
            target.put_back_alone(reason)
        return [t for t in batch if t.name not in errors]

    def _hook(self, template: str, batch: list[Target], what: str) -> None:
        """The strategy's ``drain`` or ``undrain`` for each target of ``batch``, at once: on
        this machine (placeholders name the host) or on the host, under the lock."""
        run, steps = self.run, self.steps
        on_host = self.env.strategy.drain_on == "host"

        def hook(target: Target) -> None:
            command = steps.context(target).command(template, description=what)
            where = target if on_host else steps.controller
            result = run.execute(where, command if on_host else replace(command, guard=""), what)
            if not result.ok:
                raise StepFailed(what, target.name, run.summary(result), result)

        errors = run.each(hook, batch)
        if errors:
            raise next(iter(errors.values()))

    def _bake(self, batch: list[Target], release: str, seconds: float, every: float) -> None:
        """The batch's checks again, one attempt each, every ``every`` seconds for ``seconds``:
        a failure is the batch's failure (it and every switched target are put back)."""
        run, steps = self.run, self.steps
        names = ", ".join(t.name for t in batch)
        run.emit("bake", f"bake {seconds:g} s: the checks of {names} every {every:g} s")
        deadline = time.monotonic() + seconds
        rounds = 0
        while (left := deadline - time.monotonic()) > 0:
            self._wait(min(every, left))
            for post_step in steps.phases.post:
                if post_step.retry is not None:
                    steps.run_step(post_step, batch, release=release, attempts=1)
            rounds += 1
        run.emit("bake", f"baked {seconds:g} s: {rounds} rounds of checks passed on {names}")

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``; Ctrl-C ends it (as it ends any step) and the run is put back."""
        if self.run.cancelled.wait(seconds):
            raise KeyboardInterrupt

    def _go_back(self, plan: RollbackPlan, *, verify: bool) -> list[str]:
        """Switch the targets that move, batch by batch, each to its release; then the steps
        after ``switch``. What fails on a target that is on its release already (its restart,
        its checks) does not undo the rollback: it is returned, a line per target. A switch
        that did not happen does (the put-back, as for a deploy)."""
        run, steps = self.run, self.steps
        moving = [t for t in run.targets if t.name in plan.moves]
        unwell: list[str] = []
        for batch in self.strategy.batches(moving):
            if self.slots is not None:
                errors = run.each(self._back_on_slot(plan), batch)
            else:
                errors = steps.try_step(self.pipeline.revert_step(), batch, release=plan.moves)
            for target in batch:
                error = errors.get(target.name)
                if error is None:
                    continue
                moved = target.current == plan.moves[target.name] and not target.uncertain
                if not moved or not isinstance(error, StepFailed):
                    raise error
                unwell.append(f"{target.name}: {run.redact(error.message)} (restart)")
            for post_step in steps.phases.post:
                if post_step.retry is not None and not verify:
                    continue
                errors = steps.try_step(post_step, batch, release=plan.moves)
                for name, error in errors.items():
                    if not isinstance(error, VerifyFailed):
                        raise error
                    unwell.append(f"{name}: {run.redact(error.message)}")
        return unwell

    def _back_on_slot(self, plan: RollbackPlan) -> Callable[[Target], None]:
        """Blue-green: a target back on its rollback release by a proxy switch."""
        slots = self.slots
        assert slots is not None
        return lambda target: slots.go_to(target, plan.moves[target.name], restoring=False)

    def _end(self, event: str, phase: Phase, cause: BaseException | None) -> Whereabouts:
        """Finish the run: undo what a failure requires, release the locks, close the
        connections; count it in the metrics (``run_metrics``: once the locks are released, so
        a slow Pushgateway holds up no other deploy); then raise its failure (reported once),
        or say where the targets are."""
        failure = self._finish(phase, cause, event)
        self.signals.finishing("reporting the outcome")
        run_metrics.publish(self.run, event, phase, failure)
        if failure is not None:
            self._report_failure(event, failure)
            raise failure from cause
        return self.run.placement()

    def _finish(self, phase: Phase, cause: BaseException | None, event: str) -> DeployError | None:
        """Undo what a failure requires, release the locks, close the connections."""
        self.signals.finishing("putting the fleet back")
        failure = self.recovery.recover(phase, cause, event) if cause is not None else None
        undrain = self.env.strategy.undrain
        if self.run.drained and undrain is not None:
            # taken out of the load balancer, then put back on their release: in again
            try:
                self._hook(undrain, self.run.drained, "undrain")
            except Exception as exc:
                self.run.emit("warning", f"undrain failed: {self.run.redact(str(exc))}")
            self.run.drained = []
        self.signals.finishing("releasing the locks")
        self.lock.release()
        for target in self.run.targets:
            target.backend.close()
        return failure

    def _report_failure(self, event: str, error: DeployError) -> None:
        self.run.emit(
            f"{event}.failed",
            self.run.redact(str(error)),
            data={
                **(error.whereabouts.as_data() if isinstance(error, PlacedError) else {}),
                **self.run.ending("failed", error.exit_code),
            },
        )
        error.reported = True


def _left_behind(run: Run, behind: list[Target]) -> DeployError:
    """The end of a deploy that went on without the targets that failed within ``max_fail``:
    a split fleet (exit 4), or, when nobody is on the new release, a failed deploy (exit 1)."""
    where = run.placement()
    names = ", ".join(t.name for t in behind)
    if len(behind) == len(run.targets):
        return DeployFailed(
            f"deploy failed on every host ({names}); each is back on the release it had", where
        )
    back = ", ".join(
        f"{t.name} → {t.current or '(no release)'}"
        + (
            " (which fails its checks too)"
            if "fails its checks too" in (t.left_behind or "")
            else ""
        )
        for t in behind
    )
    return FleetInconsistent(
        f"deployed {run.release} to {len(run.targets) - len(behind)} of {len(run.targets)} "
        f"hosts; left behind within max_fail, on the release each had: {back}",
        where,
    )


def _split_warning(plan: RollbackPlan) -> str:
    where = {**plan.stays, **plan.moves}
    return (
        "the fleet goes back to what it ran before the last deploy, on different releases: "
        + ", ".join(f"{name} → {release or '(no release)'}" for name, release in where.items())
    )
