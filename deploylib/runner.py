"""Runs a pipeline over targets: lock, prepare, switch, verify, put back, record, unlock.

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
   up; then the locks are released (also when interrupted) and, last, the outcome is reported.

What a failure undoes is decided from the phase it happened in, in one place (``_recover``).
Every change deploylib makes to a target after LOCK checks the lock's token first: a deploy that
lost its lock stops changing that target and ends with ``LockLost`` (exit 3).
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from deploylib import fleet, locks
from deploylib.backends.base import INTERRUPTED, Backend
from deploylib.checks import retry_checks
from deploylib.commands import Command, Operation, Probe, Result, Upload
from deploylib.config import Environment
from deploylib.context import StepContext
from deploylib.errors import (
    ConfigError,
    DeployError,
    DeployFailed,
    FleetInconsistent,
    LockHeld,
    LockLost,
    LockOwner,
    StepFailed,
    VerifyFailed,
)
from deploylib.fleet import Target
from deploylib.hosts import LOCAL, Host
from deploylib.pipeline import Pipeline, rehearse
from deploylib.remote import layout as remote_layout
from deploylib.remote import lock as remote_lock
from deploylib.remote import log as release_log
from deploylib.remote import release as remote_release
from deploylib.remote import state as target_state
from deploylib.remote.layout import Layout
from deploylib.remote.log import LogEntry
from deploylib.reporting import Event, Reporter
from deploylib.steps import Push, Rollback, Step, Switch, Verify
from deploylib.strategies import Strategy, strategy_for

BackendFactory = Callable[[Host], Backend]
#: what stops a run (Ctrl-C, kill, a closed terminal), each as Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Clock = Callable[[], datetime]


class Phase(enum.Enum):
    """How far a run got: what a failure has to undo."""

    VALIDATE = "validate"  # nothing has run
    BUILD = "build"  # local steps ran; no target was contacted
    LOCK = "lock"  # targets contacted, locked and read; nothing changed on them
    PREPARE = "prepare"  # the new release is being made; nothing live changed
    SWITCH = "switch"  # targets go live batch by batch
    RECORD = "record"  # every target is live and verified


@dataclass(frozen=True)
class Outcome:
    """What a successful run did: the release and where each target ended."""

    release: str
    placement: dict[str, str | None]
    removed: dict[str, list[str]]


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
    ) -> None:
        self.env = env
        self.pipeline = pipeline
        self.phases = pipeline.phases()
        self.backend_for = backend_for
        self.controller = controller
        #: this machine, where local steps (build) run
        self.controller_target = Target(LOCAL, controller)
        self.reporter = reporter
        self.revision = revision
        self.clock = clock
        # how many targets are worked on at once: the environment's ssh.parallel by default
        self.parallel = max(1, parallel if parallel is not None else env.ssh.parallel)
        self.strategy = strategy or strategy_for(env.strategy)
        self.workdir = workdir
        self.layout = Layout(env.deploy_to)
        self.user = getpass.getuser()
        self.controller_name = socket.gethostname()
        self.release = ""
        self.artifact = ""
        self.targets: list[Target] = []
        self.verified: list[str] = []
        #: targets left out of a rollback because they could not be reached
        self.unreachable: list[Target] = []
        self.heartbeat = heartbeat
        #: the token of this run's locks (random unless given, for tests)
        self.lock_token = lock_token or ""
        self._fixed_token = lock_token
        self._unlocking = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.artifact_bytes = 0
        #: set on Ctrl-C: health checks stop retrying
        self.cancelled = threading.Event()
        #: whether a signal may interrupt the run now (see ``_signals``), and what it is doing
        self._interruptible = True
        self._doing = "cleaning up"
        self._reporter_failed = False

    # ------------------------------------------------------------------ public

    def deploy(self, hosts: Sequence[Host]) -> Outcome:
        self.release = remote_layout.make_release_id(self.clock(), self.revision)
        self._emit(
            "deploy.start",
            f"deploy {self.env.app} {self.release} (revision {self.revision}) to "
            f"{self.env.name}: {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
            + (" [dry run]" if self.controller.dry else ""),
            data={
                "release": self.release,
                "revision": self.revision,
                "env": self.env.name,
                "hosts": [h.name for h in hosts],
            },
        )
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="deploylib-"))
        self.artifact = str(workdir / f"{self.env.app}-{self.release}.tar.gz")
        phase = Phase.VALIDATE
        failure: DeployError | None = None
        cause: BaseException | None = None
        removed: dict[str, list[str]] = {}
        with self._signals():
            try:
                rehearse(
                    self.pipeline,
                    self.env,
                    hosts,
                    release=self.release,
                    revision=self.revision,
                    artifact=self.artifact,
                )
                phase = Phase.BUILD
                self._run_local_steps()
                phase = Phase.LOCK
                self.targets = self._connect(hosts)
                self._lock_all()
                self._check_targets()
                phase = Phase.PREPARE
                for prepare_step in self.phases.prepare:
                    self._run_step(prepare_step, self.targets)
                for target in self.targets:
                    target.prepared = True
                phase = Phase.SWITCH
                self._go_live(self.release, self.phases.switch)
                phase = Phase.RECORD
                # every target is live and verified: what follows cannot be undone, nor need be
                self._finishing("recording the deploy")
                self._record_all("deploy", "success", self.release)
                removed = self._cleanup()
                self._check_lost_after("deployed")
            except BaseException as exc:
                self._interruptible = False  # first: a second Ctrl-C must not cut the clean-up
                cause = exc
            self._finishing("putting the fleet back")
            if cause is not None:
                failure = self._recover(phase, cause, "deploy")
            self._finishing("releasing the locks")
            self._unlock_all()
            self._close()
            if self.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
            # reported after the locks are released: a slow notification holds nobody up
            self._finishing("reporting the outcome")
            if failure is not None:
                self._report_failure("deploy", failure)
                raise failure from cause
            placement = self._placement()
            self._emit(
                "deploy.ok",
                f"deployed {self.release} to {self.env.name}: "
                + ", ".join(f"{h} → {r}" for h, r in placement.items())
                + "".join(f"\n  verified: {line}" for line in self.verified),
                data={"release": self.release, "placement": placement, "verified": self.verified},
            )
            return Outcome(self.release, placement, removed)

    def rollback(self, hosts: Sequence[Host], to: str | None = None) -> Outcome:
        """Switch every target back: to ``to``, or to the release before current in the log."""
        if to is not None and not remote_layout.is_release_id(to):
            raise ConfigError(
                f"not a release id: {to!r} (expected YYYYmmddTHHMMSSZ[-rev])", key="--to"
            )
        self._emit(
            "rollback.start",
            f"rollback {self.env.app} on {self.env.name}" + (f" to {to}" if to else ""),
            data={"to": to, "hosts": [h.name for h in hosts]},
        )
        phase = Phase.LOCK
        failure: DeployError | None = None
        cause: BaseException | None = None
        with self._signals():
            try:
                self.targets = self._connect(hosts)
                self._lock_all(skip_unreachable=True)
                self._check_targets(new_release=False)
                self.release = self._rollback_target(to)
                self.revision = self._revision_of(self.release)
                phase = Phase.SWITCH
                self._go_live(self.release, self._revert_step(), check_locks=False)
                phase = Phase.RECORD
                self._finishing("recording the rollback")
                self._record_all("rollback", "success", self.release)
                self._check_lost_after("rolled back")
                if self.unreachable:
                    names = ", ".join(t.name for t in self.unreachable)
                    raise FleetInconsistent(
                        f"rolled back to {self.release} where hosts could be reached; "
                        f"{names} could not be reached and did not change",
                        self._placement(),
                    )
            except BaseException as exc:
                self._interruptible = False
                cause = exc
            self._finishing("putting the fleet back")
            if cause is not None:
                failure = self._recover(phase, cause, "rollback")
            self._finishing("releasing the locks")
            self._unlock_all()
            self._close()
            self._finishing("reporting the outcome")
            if failure is not None:
                self._report_failure("rollback", failure)
                raise failure from cause
            placement = self._placement()
            self._emit(
                "rollback.ok",
                f"rolled back {self.env.name} to {self.release}",
                data={"release": self.release, "placement": placement},
            )
            return Outcome(self.release, placement, {})

    # ------------------------------------------------------------------ phases

    def _run_local_steps(self) -> None:
        controller = self.controller_target
        for local_step in self.phases.local:
            self._run_on(local_step, controller)
        if self._pushes():
            result = self._execute(
                controller, remote_release.artifact_check(self.artifact), "build"
            )
            self.artifact_bytes = remote_release.artifact_footprint(self.artifact)
            if not result.ok:
                raise StepFailed(
                    "build",
                    "local",
                    f"the build did not write {{artifact}} ({self.artifact})",
                    result,
                )

    def _pushes(self) -> bool:
        return any(isinstance(s, Push) for s in self.phases.prepare)

    def _connect(self, hosts: Sequence[Host]) -> list[Target]:
        return [Target(host, self.backend_for(host)) for host in hosts]

    def _lock_all(self, *, skip_unreachable: bool = False) -> None:
        """Lock every target, all or nothing, reading its state; then keep the locks' heartbeat
        going.

        With ``skip_unreachable`` (a rollback: an emergency), targets that cannot be reached
        are set aside in ``self.unreachable`` and the others go on."""
        owner = locks.new_owner(
            self.release or None,
            self.clock().isoformat(timespec="seconds"),
            self.heartbeat,
            self._fixed_token,
        )
        self.lock_token = str(owner["token"])
        inherited = locks.inherited_token()
        command = remote_lock.lock_command(self.layout, owner)

        def lock(target: Target) -> None:
            target.lock_pending = True
            result = self._execute(target, command, "lock")
            state = target_state.parse_state(result.stdout, self.layout)
            if state.read:
                target.state = state
                target.current = state.current
            target.unreachable = result.unreachable
            holder = state.lock_owner or {}
            if result.exit_code == remote_lock.LOCK_HELD_EXIT:
                target.lock_pending = False
                if inherited and holder.get("token") == inherited:
                    target.token = inherited  # the deploy this one runs inside holds it
                    return
                age = state.lock_age
                reason = locks.stale_reason(holder, age)
                raise LockHeld([LockOwner(target.name, holder, age, reason)])
            if result.ok:
                target.lock_pending = False
                target.token, target.owns_lock = self.lock_token, True
                return
            definite = not (
                result.unreachable or result.timed_out or result.exit_code == INTERRUPTED
            )
            if state.read and definite:
                target.lock_pending = False  # the script ran to its end and took nothing
            # else: cut off — it may have taken the lock; the unlock (by token) will see
            raise StepFailed("lock", target.name, self._summary(result), result)

        errors = self._parallel(lock, self.targets)
        if skip_unreachable:
            lost = {
                name
                for name, e in errors.items()
                if isinstance(e, StepFailed) and e.result is not None and e.result.unreachable
            }
            for target in [t for t in self.targets if t.name in lost]:
                self._emit(
                    "warning",
                    f"unreachable, left as it is: {errors.pop(target.name)}",
                    host=target.name,
                )
                target.backend.close()
                self.unreachable.append(target)
                self.targets.remove(target)
            if lost and not self.targets:
                raise DeployFailed("no host could be reached; nothing changed", self._placement())
        held = [owner for e in errors.values() if isinstance(e, LockHeld) for owner in e.owners]
        if held:
            raise LockHeld(held, self.env.name)
        if errors:
            raise next(iter(errors.values()))
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self._heartbeat.start()

    def _beat(self) -> None:
        """Touch every held lock's heartbeat each interval, all hosts at once: one slow host
        must not make the others' locks look stale."""
        beat = remote_lock.heartbeat_command(self.layout, self.lock_token)

        def touch(target: Target) -> None:
            if target.owns_lock and target.locked and not self._unlocking.is_set():
                self._note_lock_loss(target, target.backend.execute(beat))

        with ThreadPoolExecutor(
            max_workers=min(self.parallel, 32), thread_name_prefix="beat"
        ) as pool:
            while not self._unlocking.wait(self.heartbeat):
                list(pool.map(touch, list(self.targets)))

    def _check_targets(self, *, new_release: bool = True) -> None:
        """Refuse, before anything changes, targets whose layout deploylib did not make, and a
        release id that exists already; warn about what the state read says is odd."""
        problems = []
        for target in self.targets:
            state = target.state
            problem = state.layout_problem(self.layout)
            if problem:
                problems.append(f"{target.name}: {problem}")
            elif new_release and self.release in state.releases | state.mentioned():
                problems.append(
                    f"{target.name}: release {self.release} already exists (two deploys of one "
                    "revision within a second?); deploy again"
                )
            if state.current and state.current not in state.releases:
                self._emit(
                    "warning",
                    f"current points at {state.current}, which is missing: a failed deploy "
                    "here leaves no current",
                    host=target.name,
                )
        if problems:
            raise DeployFailed(
                "refusing to go on, nothing was changed:\n  " + "\n  ".join(problems),
                self._placement(),
            )

    def _check_lost_after(self, done: str) -> None:
        """After the release went live: a lock lost meanwhile (its host's release log could not
        be written) ends the run with exit 3, every host where it is."""
        lost = [t.name for t in self.targets if t.lock_lost]
        if lost:
            raise LockLost(
                f"{done} {self.release}, but the deploy lock on {', '.join(lost)} was removed or "
                "taken over meanwhile: the release log there has no line for it",
                self._placement(),
            )

    def _check_locks(self, targets: Sequence[Target]) -> None:
        """Make sure this run still holds the lock of ``targets`` before they switch."""

        def check(target: Target) -> None:
            if target.token is None or target.lock_lost:
                return
            command = remote_lock.check_lock_command(self.layout, target.token)
            result = self._execute(target, command, "lock")
            self._note_lock_loss(target, result)
            if not result.ok and not target.lock_lost:
                raise StepFailed("lock", target.name, self._summary(result), result)

        errors = self._parallel(check, targets)
        lost = [t.name for t in targets if t.lock_lost]
        if lost:
            raise LockLost(
                f"the deploy lock on {', '.join(lost)} was removed or taken over by another deploy",
                self._placement(),
            )
        if errors:
            raise next(iter(errors.values()))

    def _go_live(self, release: str, switch_step: Step | None, *, check_locks: bool = True) -> None:
        """Switch targets batch by batch, running the steps after ``switch`` after each batch."""
        if switch_step is None:
            for post_step in self.phases.post:
                self._run_step(post_step, self.targets)
            return
        for batch in self.strategy.batches(self.targets):
            if check_locks:
                self._check_locks(self.targets)  # a batch before may have lost its lock
            self._run_step(switch_step, batch, release=release)
            for post_step in self.phases.post:
                self._run_step(post_step, batch, release=release)

    # ------------------------------------------------------------------ steps

    def _run_step(
        self, step: Step, targets: Sequence[Target], *, release: str | None = None
    ) -> None:
        if step.placement == "local":
            self._run_on(step, self.controller_target, release)
            return
        chosen = self._targets_for(step, targets)
        errors = self._parallel(lambda t: self._run_on(step, t, release), chosen)
        if errors:
            raise next(iter(errors.values()))

    def _targets_for(self, step: Step, targets: Sequence[Target]) -> list[Target]:
        if step.placement == "once":
            wanted = step.roles or (("db",) if step.name == "migrate" else ())
            for target in self.targets:
                if set(wanted) & set(target.host.roles):
                    return [target] if target in targets else []
            return [self.targets[0]] if self.targets and self.targets[0] in targets else []
        if step.roles:
            return [t for t in targets if set(step.roles) & set(t.host.roles)]
        return list(targets)

    def _context(
        self, target: Target, release: str | None = None, *, restoring: bool = False
    ) -> StepContext:
        return StepContext(
            env=self.env,
            host=target.host,
            release=release or self.release,
            revision=self.revision,
            artifact=self.artifact,
            previous=target.state.current,
            artifact_bytes=self.artifact_bytes,
            lock_token=target.token or self.lock_token,
            restoring=restoring,
            guard_token=target.token or "",
        )

    def _run_on(
        self,
        step: Step,
        target: Target,
        release: str | None = None,
        *,
        restoring: bool = False,
    ) -> None:
        ctx = self._context(target, release, restoring=restoring)
        started = time.monotonic()
        self._emit("step.start", host=target.name, step=step.name)
        if isinstance(step, Verify):
            self._verify(step, target, ctx)
        else:
            if isinstance(step, Switch | Rollback):
                target.switched = True
            deadline = started + self.env.step_timeout
            for index, op in enumerate(step.operations(ctx)):
                if target.lock_lost:
                    raise StepFailed(step.name, target.name, "the deploy lock here was lost")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(
                        step.name,
                        target.name,
                        f"the step took longer than {self.env.step_timeout:g} s",
                    )
                result = self._execute(
                    target, _bounded(op, remaining, self.env.command_timeout), step.name
                )
                self._note_lock_loss(target, result)
                if isinstance(step, Switch | Rollback) and index == 0:
                    # the first operation moves `current`; what follows (restart) does not.
                    # Cut off (unreachable, timed out, interrupted), it may or may not have
                    if result.ok:
                        target.current, target.uncertain = ctx.release, False
                    elif result.unreachable or result.timed_out or result.exit_code == INTERRUPTED:
                        target.uncertain = True
                if not result.ok:
                    if result.unreachable:
                        target.unreachable = True
                    raise StepFailed(step.name, target.name, self._summary(result), result)
        self._emit(
            "step.ok",
            host=target.name,
            step=step.name,
            data={"seconds": round(time.monotonic() - started, 3)},
        )

    def _verify(self, step: Verify, target: Target, ctx: StepContext) -> None:
        def on_attempt(attempt: int, result: Result) -> None:
            self._warn_of(result, target, step.name)
            message = "ok" if result.ok else self._summary(result, 300)
            self._emit(
                "check.attempt",
                message,
                host=target.name,
                step=step.name,
                data={"attempt": attempt, "ok": result.ok},
            )

        operations = step.operations(ctx)
        for op in operations:
            self._emit("operation", op.line, host=target.name, step=step.name)
        result = retry_checks(
            target.backend,
            operations,
            attempts=step.attempts,
            wait=step.wait,
            deadline=min(step.deadline or self.env.step_timeout, self.env.step_timeout),
            cancelled=self.cancelled,
            on_attempt=on_attempt,
        )
        if result.ok and ctx.release == self.release:
            for op in operations:
                if isinstance(op, Probe) and op.line not in self.verified:
                    self.verified.append(op.line)
        if not result.ok:
            if result.unreachable:
                target.unreachable = True
            raise VerifyFailed(
                step.name,
                target.name,
                f"gave up after {step.attempts} attempts: {self._summary(result, 300)}",
                result,
            )

    def _execute(self, target: Target, op: Operation, step: str) -> Result:
        self._emit("operation", op.line, host=target.name, step=step)
        result = target.backend.execute(op)
        self._warn_of(result, target, step)
        return result

    def _warn_of(self, result: Result, target: Target, step: str) -> None:
        """A backend's note about an operation (a background process holding its output)."""
        if result.note:
            self._emit("warning", self._redact(result.note), host=target.name, step=step)

    def _note_lock_loss(self, target: Target, result: Result) -> None:
        if (
            result.exit_code == remote_lock.LOCK_LOST_EXIT
            and "no longer this deploy's" in result.stderr
        ):
            target.lock_lost = True

    # ------------------------------------------------------------------ failure

    def _recover(self, phase: Phase, exc: BaseException, event: str) -> DeployError:
        """Undo what ``phase`` requires after ``exc``; return the error that ends the run.

        VALIDATE and BUILD touched no target: a ``ConfigError`` stays one (exit 2). LOCK changed
        nothing on any target (the locks are released later). PREPARE removes the unfinished
        release; SWITCH first puts every switched target back. Both record the failure in the
        release log and run the ``on_failure`` steps. Whatever the error, once a target was
        touched the run ends as a failure (exit 1), lost locks (3) or split fleet (4)."""
        self.cancelled.clear()  # the re-verify of the put-back release must run its checks
        reason = self._reason(exc)
        if isinstance(exc, StepFailed):
            self._emit("step.failed", self._redact(exc.message), host=exc.host, step=exc.step)
        if phase in (Phase.VALIDATE, Phase.BUILD):
            if isinstance(exc, ConfigError):
                return exc
            return DeployFailed(f"{event} failed: {reason}; nothing was changed", {})
        if phase is Phase.LOCK:
            if isinstance(exc, LockHeld | DeployFailed | FleetInconsistent):
                return exc
            return DeployFailed(f"{event} failed: {reason}; nothing was changed", self._placement())
        if phase is Phase.RECORD:
            if isinstance(exc, FleetInconsistent | LockLost):
                return exc
            return DeployFailed(
                f"{event} failed: {reason}; every target is on the new release", self._placement()
            )
        if phase is Phase.SWITCH:
            self._settle_uncertain()
        broken, unwell = self._put_back() if phase is Phase.SWITCH else ([], [])
        if event == "deploy":
            self._remove_unfinished()
        outcome = "rolled_back" if phase is Phase.SWITCH and event == "deploy" else "failed"
        self._record_all(event, outcome, self.release, error=reason)
        self._run_on_failure_steps()
        placement = self._placement()
        lost = [t.name for t in self.targets if t.lock_lost]
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

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted"
        if isinstance(exc, LockLost | DeployFailed | FleetInconsistent):
            return self._redact(str(exc).split("\n", 1)[0])
        if isinstance(exc, DeployError):
            return self._redact(str(exc))
        return f"{exc.__class__.__name__}: {self._redact(str(exc))}"

    def _report_failure(self, event: str, error: DeployError) -> None:
        placement = getattr(error, "placement", None)
        self._emit(
            f"{event}.failed",
            self._redact(str(error)),
            data={"placement": placement} if placement is not None else {},
        )
        error.reported = True

    def _settle_uncertain(self) -> None:
        """Targets whose switch was cut off (timed out, interrupted) may or may not have moved
        `current`: read it, where the host still answers, instead of guessing."""

        def settle(target: Target) -> None:
            result = self._execute(target, target_state.state_command(self.layout), "rollback")
            state = target_state.parse_state(result.stdout, self.layout)
            if result.ok and state.read and state.current_kind in ("release", "absent"):
                target.current, target.uncertain = state.current, False

        unsure = [t for t in self.targets if t.uncertain and not t.unreachable]
        self._parallel(settle, unsure)

    def _revert_step(self) -> Rollback:
        """How a target goes back: the pipeline's ``rollback`` step from ``on_failure``, with the
        switch step's restart unless it names its own."""
        default_restart = self.phases.switch.restart if self.phases.switch else None
        revert = self.pipeline.revert or Rollback(name="rollback")
        if revert.restart is None and default_restart:
            revert = replace(revert, restart=default_restart)
        return revert

    def _put_back(self) -> tuple[list[str], list[str]]:
        """Return every switched target to the release it had and re-verify it there.

        Returns the targets that could not be switched back (the fleet is inconsistent) and
        those that are back but fail their checks on the old release too (consistent, unwell).
        A target whose lock was lost is not touched: it counts as not put back.
        """
        revert = self._revert_step()
        verifies = [s for s in self.phases.post if isinstance(s, Verify)]
        unwell: list[str] = []

        def put_back(target: Target) -> None:
            previous = target.state.current
            if previous is not None and previous not in target.state.releases:
                previous = None  # it pointed at a release that is gone: there is none to restore
            if target.lock_lost:
                raise StepFailed("rollback", target.name, "the deploy lock here was lost")
            self._emit("revert", f"putting back {previous or '(no release)'}", host=target.name)
            if previous is None:
                unset = remote_release.switch_command(self.layout, None, target.token)
                result = self._execute(target, unset, "rollback")
                self._note_lock_loss(target, result)
                if not result.ok:
                    raise StepFailed("rollback", target.name, self._summary(result), result)
                target.current = None
                return
            try:
                self._run_on(revert, target, previous, restoring=True)
            except StepFailed as exc:
                if target.current != previous or target.uncertain:
                    raise
                # back on the old release; only its restart failed: one release, unwell
                unwell.append(target.name)
                self._emit(
                    "warning",
                    f"back on {previous}, but its restart failed: {self._redact(exc.message)}",
                    host=target.name,
                )
                return
            try:
                for verify_step in verifies:
                    self._run_on(verify_step, target, previous)
            except StepFailed as exc:
                unwell.append(target.name)
                self._emit(
                    "warning",
                    f"back on {previous}, which fails its checks too: {self._redact(exc.message)}",
                    host=target.name,
                )

        switched = [t for t in self.targets if t.switched]
        errors = self._parallel(put_back, switched)
        for name, error in errors.items():
            self._emit("warning", f"putting back failed: {self._redact(str(error))}", host=name)
        return list(errors), sorted(unwell)

    def _remove_unfinished(self) -> None:
        def remove(target: Target) -> None:
            if target.current == self.release or target.uncertain:
                return  # live, or maybe live: never removed
            command = remote_release.remove_release_command(
                self.layout, [self.release], target.token
            )
            result = self._execute(target, command, "cleanup")
            if not result.ok:
                raise StepFailed("cleanup", target.name, self._summary(result), result)

        locked = [t for t in self.targets if t.locked]
        for name, error in self._parallel(remove, locked).items():
            self._emit("warning", f"could not remove the unfinished release: {error}", host=name)
        for target in self.targets:
            if target.lock_lost:
                self._emit(
                    "warning",
                    f"left releases/{self.release} as it is: the deploy lock here was lost",
                    host=target.name,
                )

    def _run_on_failure_steps(self) -> None:
        for failure_step in self.pipeline.on_failure:
            targets = [t for t in self.targets if t.locked]
            try:
                self._run_step(failure_step, targets)
            except Exception as exc:  # an on_failure hook must not mask the deploy's failure
                self._emit(
                    "warning",
                    f"on_failure step {failure_step.name!r} failed: {self._redact(str(exc))}",
                )

    # ------------------------------------------------------------------ records

    def _record_all(
        self, event: str, outcome: str, release: str, *, error: str | None = None
    ) -> None:
        """Append to every locked target's release log; a failure there is a warning."""
        now = self.clock().isoformat(timespec="seconds")

        def record(target: Target) -> None:
            entry = LogEntry(
                event=event,
                outcome=outcome,
                release=release,
                revision=self.revision,
                current=target.current,
                previous=target.state.current,
                user=self.user,
                controller=self.controller_name,
                time=now,
                error=self._redact(error) if error else None,
            )
            command = release_log.record_command(self.layout, entry, target.token)
            result = self._execute(target, command, "record")
            self._note_lock_loss(target, result)
            if not result.ok:
                raise StepFailed("record", target.name, self._summary(result), result)
            target.state = replace(
                target.state,
                current=target.current,
                releases=target.state.releases | ({release} if target.prepared else set()),
                complete=target.state.complete | ({release} if target.prepared else set()),
                log=(*target.state.log, entry.as_dict()),
            )

        errors = self._parallel(record, [t for t in self.targets if t.locked])
        for name, exc in errors.items():
            self._emit(
                "warning", f"could not write the release log: {self._redact(str(exc))}", host=name
            )

    def _cleanup(self) -> dict[str, list[str]]:
        removed: dict[str, list[str]] = {}

        def clean(target: Target) -> None:
            state = target.state
            if state.damaged:
                self._emit(
                    "warning",
                    f"cleanup skipped, every release kept: {state.log_problem()}; once the "
                    f"line is checked and removed from {self.layout.log}, cleanup resumes",
                    host=target.name,
                )
                removed[target.name] = []
                return
            unexplained = state.unexplained()
            if unexplained:
                self._emit(
                    "warning",
                    f"kept {', '.join(unexplained)}: not in the release log (left by an "
                    "interrupted deploy, or made by hand); remove them once checked",
                    host=target.name,
                )
            doomed = state.removable(self.env.keep_releases)
            removed[target.name] = doomed
            if doomed:
                command = remote_release.remove_release_command(self.layout, doomed, target.token)
                result = self._execute(target, command, "cleanup")
                if not result.ok:
                    raise StepFailed("cleanup", target.name, self._summary(result), result)

        for name, error in self._parallel(clean, [t for t in self.targets if t.locked]).items():
            self._emit("warning", f"cleanup failed: {self._redact(str(error))}", host=name)
        return removed

    # ------------------------------------------------------------------ rollback helpers

    def _rollback_target(self, to: str | None) -> str:
        wanted: dict[str, str | None] = {}
        why: list[str] = []
        for target in self.targets:
            state = target.state
            if to is not None:
                if to not in state.complete:
                    why.append(f"{target.name}: release {to} is not there (or not complete)")
                elif not state.log_problem() and not state.was_live(to):
                    why.append(f"{target.name}: release {to} was never live there")
                else:
                    wanted[target.name] = to
                    continue
            else:
                wanted[target.name] = state.rollback_target()
                if wanted[target.name] is not None:
                    continue
                problem = state.log_problem()
                on_disk = ", ".join(sorted(state.complete - {state.current or ""})) or "none"
                why.append(
                    f"{target.name}: {problem}; name the release with --to (releases there: "
                    f"{on_disk})"
                    if problem
                    else f"{target.name}: there is no earlier release"
                )
            wanted[target.name] = None
        if why:
            raise DeployFailed(
                "cannot roll back, nothing changed:\n  " + "\n  ".join(why), self._placement()
            )
        distinct = set(wanted.values())
        if len(distinct) > 1:
            raise DeployFailed(
                "cannot roll back: targets disagree on the previous release "
                "(use --to RELEASE); nothing changed",
                wanted,
            )
        release = distinct.pop()
        assert release is not None
        return release

    def _revision_of(self, release: str) -> str:
        for entry in reversed(self.targets[0].state.log):
            if entry.get("release") == release and entry.get("revision"):
                return str(entry["revision"])
        return "unknown"

    # ------------------------------------------------------------------ plumbing

    def _unlock_all(self) -> None:
        """Release every lock this run holds or may hold (a lock command that was cut off may
        have taken it): each removal checks the token, so another deploy's lock stays."""
        self._unlocking.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=15)

        def unlock(target: Target) -> None:
            command = remote_lock.unlock_command(self.layout, self.lock_token)
            result = target.backend.execute(command)
            if not result.ok:
                raise StepFailed("unlock", target.name, self._summary(result), result)
            target.owns_lock = target.lock_pending = False
            target.token = None

        mine = [
            t
            for t in self.targets
            if (t.owns_lock or t.lock_pending) and not t.lock_lost and self.lock_token
        ]
        for name, error in self._parallel(unlock, mine).items():
            self._emit(
                "warning",
                f"could not release the lock: {error}; remove it with "
                f"deploylib unlock --env {self.env.name} once that host answers",
                host=name,
            )

    def _close(self) -> None:
        for target in self.targets:
            target.backend.close()

    def _parallel(
        self, work: Callable[[Target], None], targets: Iterable[Target]
    ) -> dict[str, BaseException]:
        return fleet.run_parallel(work, targets, self.parallel, on_interrupt=self.cancelled.set)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """While a run lasts, the first Ctrl-C, SIGTERM or SIGHUP interrupts it (as Ctrl-C) and
        every later one only says what is still being done: once a run fails or finishes, its
        clean-up — putting the fleet back, the release log, the unlock — is never cut short;
        stopping half-way is how fleets end up split. The handler writes to stderr directly:
        it takes no lock a reporter may hold at that moment. (Main thread only: elsewhere
        signals cannot be handled and the run is as it is.)"""
        self._interruptible = True
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self._interruptible:
                self._interruptible = False
                raise KeyboardInterrupt
            _say(
                f"deploylib: still {self._doing}; it exits when that is done "
                "(the hosts are left on one release)\n"
            )

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _finishing(self, doing: str) -> None:
        """From here on the run finishes whatever happens: signals only get told ``doing``."""
        self._interruptible = False
        self._doing = doing

    def _placement(self) -> dict[str, str | None]:
        return fleet.placement(self.targets, self.unreachable, self.release)

    def _redact(self, text: str) -> str:
        return self.env.redactor.redact(text)

    def _summary(self, result: Result, limit: int = 2000) -> str:
        return result.summary(limit, redact=self._redact)

    def _emit(
        self,
        kind: str,
        message: str = "",
        *,
        host: str | None = None,
        step: str | None = None,
        data: dict[str, object] | None = None,
    ) -> None:
        try:
            self.reporter.emit(Event(kind, message, host, step, data or {}))
        except Exception as exc:  # a reporter must never stop a put-back or an unlock
            if not self._reporter_failed:
                self._reporter_failed = True
                _say(f"deploylib: could not report ({exc.__class__.__name__}: {exc}); going on\n")


def _say(text: str) -> None:
    """Write to stderr at once, taking no lock (safe in a signal handler)."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="replace"))


def _bounded(op: Operation, remaining: float, default: float) -> Operation:
    """``op`` with its timeout (else ``default``) cut to what is left of the step's deadline."""
    if isinstance(op, Command | Upload):
        return replace(op, timeout=min(op.timeout or default, remaining))
    return replace(op, timeout=min(op.timeout, remaining))
