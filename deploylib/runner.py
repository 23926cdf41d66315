"""Runs a pipeline over targets: lock, prepare, switch, verify, put back, record, unlock.

Fleet semantics, for one target as for many:

1. the pipeline and config were validated before this module is reached;
2. local steps (``build``) run once on this machine; nothing remote is touched yet;
3. every target is locked, all or nothing (``LockHeld``, exit 3);
4. prepare steps run on every target; a failure anywhere removes the unfinished release
   everywhere and switches nobody (``DeployFailed``, exit 1);
5. the strategy switches targets and the steps after ``switch`` (``verify``) run; a failure
   puts every switched target back on the release it had and re-verifies it (exit 1), or
   reports which target is on what if that failed (``FleetInconsistent``, exit 4);
6. the outcome is appended to every target's release log, old releases are cleaned up and the
   locks are released, also when interrupted.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from deploylib import fleet, locks, releases
from deploylib.backends.base import Backend
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
    LockOwner,
    StepFailed,
    VerifyFailed,
)
from deploylib.fleet import Target
from deploylib.hosts import LOCAL, Host
from deploylib.pipeline import Pipeline
from deploylib.releases import Layout, LogEntry, TargetState
from deploylib.reporting import Event, Reporter
from deploylib.steps import Push, Rollback, Step, Switch, Verify
from deploylib.strategies import Strategy, strategy_for

BackendFactory = Callable[[Host], Backend]
Clock = Callable[[], datetime]


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
        self.user = getpass.getuser()
        self.controller_name = socket.gethostname()
        self.release = ""
        self.artifact = ""
        self.targets: list[Target] = []
        self.verified: list[str] = []
        #: targets left out of a rollback because they could not be reached
        self.unreachable: list[Target] = []
        self.heartbeat = heartbeat
        self.lock_token = ""
        self._unlocking = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.artifact_bytes = 0
        #: set on Ctrl-C: health checks stop retrying
        self.cancelled = threading.Event()

    # ------------------------------------------------------------------ public

    def deploy(self, hosts: Sequence[Host]) -> Outcome:
        self.release = releases.make_release_id(self.clock(), self.revision)
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
        phase = "build"
        try:
            self._run_local_steps()
            phase = "connect"
            self.targets = self._connect(hosts)
            self._lock_all()
            self._check_release_is_new()
            phase = "prepare"
            for prepare_step in self.phases.prepare:
                self._run_step(prepare_step, self.targets)
            for target in self.targets:
                target.prepared = True
            phase = "switch"
            self._go_live(self.release, self.phases.switch)
            phase = "record"
            # every target is live on the new release: a log that cannot be written is a
            # warning, not a reason to switch back
            self._record_all("deploy", "success", self.release)
            removed = self._cleanup()
            placement = self._placement()
            self._emit(
                "deploy.ok",
                f"deployed {self.release} to {self.env.name}: "
                + ", ".join(f"{h} → {r}" for h, r in placement.items())
                + "".join(f"\n  verified: {line}" for line in self.verified),
                data={"release": self.release, "placement": placement, "verified": self.verified},
            )
            return Outcome(self.release, placement, removed)
        except BaseException as exc:
            with self._cleaning("putting the fleet back"):
                error = self._fail(phase, exc)
            raise error from exc
        finally:
            with self._cleaning("releasing the locks"):
                self._unlock_all()
                self._close()
            if self.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)

    def rollback(self, hosts: Sequence[Host], to: str | None = None) -> Outcome:
        """Switch every target back: to ``to``, or to the release before current in the log."""
        if to is not None:
            try:
                releases.validate_release_id(to)
            except ValueError as exc:
                raise ConfigError(str(exc), key="--to") from None
        self._emit(
            "rollback.start",
            f"rollback {self.env.app} on {self.env.name}" + (f" to {to}" if to else ""),
            data={"to": to, "hosts": [h.name for h in hosts]},
        )
        phase = "connect"
        try:
            self.targets = self._connect(hosts)
            self._lock_all(skip_unreachable=True)
            self.release = self._rollback_target(to)
            self.revision = self._revision_of(self.release)
            phase = "switch"
            self._go_live(self.release, self._revert_step())
            phase = "record"
            self._record_all("rollback", "success", self.release)
            placement = self._placement()
            if self.unreachable:
                names = ", ".join(t.name for t in self.unreachable)
                raise FleetInconsistent(
                    f"rolled back to {self.release} where hosts could be reached; "
                    f"{names} could not be reached and did not change",
                    placement,
                )
            self._emit(
                "rollback.ok",
                f"rolled back {self.env.name} to {self.release}",
                data={"release": self.release, "placement": placement},
            )
            return Outcome(self.release, placement, {})
        except BaseException as exc:
            with self._cleaning("putting the fleet back"):
                error = self._fail(phase, exc, event="rollback")
            raise error from exc
        finally:
            with self._cleaning("releasing the locks"):
                self._unlock_all()
                self._close()

    # ------------------------------------------------------------------ phases

    def _run_local_steps(self) -> None:
        controller = self.controller_target
        for local_step in self.phases.local:
            self._run_on(local_step, controller)
        if self._pushes():
            result = self._execute(controller, releases.artifact_check(self.artifact), "build")
            self.artifact_bytes = releases.artifact_footprint(self.artifact)
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
        """Lock every target, all or nothing; then keep the locks' heartbeat going.

        With ``skip_unreachable`` (a rollback: an emergency), targets that cannot be reached
        are set aside in ``self.unreachable`` and the others go on."""
        owner = locks.new_owner(
            self.release or None, self.clock().isoformat(timespec="seconds"), self.heartbeat
        )
        self.lock_token = str(owner["token"])
        inherited = locks.inherited_token()
        layout = Layout(self.env.deploy_to)

        def lock(target: Target) -> None:
            result = self._execute(target, releases.lock_command(layout, owner), "lock")
            target.reached = not result.unreachable
            target.state = releases.parse_state(result.stdout)
            target.current = target.state.current
            holder = target.state.lock_owner or {}
            if result.exit_code == releases.LOCK_HELD_EXIT:
                if inherited and holder.get("token") == inherited:
                    return  # the deploy this one runs inside holds it: go on under its lock
                age = target.state.lock_age
                reason = locks.stale_reason(holder, age)
                raise LockHeld([LockOwner(target.name, holder, age, reason)])
            if not result.ok:
                raise StepFailed("lock", target.name, result.summary(), result)
            target.locked = True

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
                target.unreachable = True
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
        layout = Layout(self.env.deploy_to)
        beat = releases.heartbeat_command(layout, self.lock_token)
        while not self._unlocking.wait(self.heartbeat):
            for target in self.targets:
                if target.locked and not self._unlocking.is_set():
                    target.backend.execute(beat)

    def _check_release_is_new(self) -> None:
        for target in self.targets:
            known = target.state.releases | {str(e.get("release")) for e in target.state.log}
            if self.release in known:
                raise ConfigError(
                    f"release {self.release} already exists on {target.name} (two deploys of one "
                    "revision within a second?); deploy again",
                    key="release",
                )

    def _go_live(self, release: str, switch_step: Step | None) -> None:
        """Switch targets batch by batch, running the steps after ``switch`` after each batch."""
        if switch_step is None:
            for post_step in self.phases.post:
                self._run_step(post_step, self.targets)
            return
        for batch in self.strategy.batches(self.targets):
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

    def _context(self, target: Target, release: str | None = None) -> StepContext:
        return StepContext(
            env=self.env,
            host=target.host,
            release=release or self.release,
            revision=self.revision,
            artifact=self.artifact,
            previous=target.state.current,
            artifact_bytes=self.artifact_bytes,
            lock_token=self.lock_token,
        )

    def _run_on(self, step: Step, target: Target, release: str | None = None) -> None:
        ctx = self._context(target, release)
        started = time.monotonic()
        self._emit("step.start", host=target.name, step=step.name)
        if isinstance(step, Verify):
            self._verify(step, target, ctx)
        else:
            if isinstance(step, Switch | Rollback):
                target.switched = True
            deadline = started + self.env.step_timeout
            for index, op in enumerate(step.operations(ctx)):
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
                if isinstance(step, Switch | Rollback) and index == 0:
                    # the first operation moves `current`; what follows (restart) does not
                    if result.ok:
                        target.current, target.uncertain = ctx.release, False
                    elif result.unreachable:
                        target.uncertain = True
                if not result.ok:
                    if result.unreachable:
                        target.unreachable = True
                    raise StepFailed(step.name, target.name, result.summary(), result)
        self._emit(
            "step.ok",
            host=target.name,
            step=step.name,
            data={"seconds": round(time.monotonic() - started, 3)},
        )

    def _verify(self, step: Verify, target: Target, ctx: StepContext) -> None:
        def on_attempt(attempt: int, result: Result) -> None:
            message = "ok" if result.ok else result.summary(300)
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
                f"gave up after {step.attempts} attempts: {result.summary(300)}",
                result,
            )

    def _execute(self, target: Target, op: Operation, step: str) -> Result:
        self._emit("operation", op.line, host=target.name, step=step)
        return target.backend.execute(op)

    # ------------------------------------------------------------------ failure

    def _fail(self, phase: str, exc: BaseException, *, event: str = "deploy") -> BaseException:
        """Put every target back as ``phase`` requires; return the error to raise."""
        self.cancelled.clear()  # the re-verify of the put-back release must run its checks
        if isinstance(exc, ConfigError | LockHeld | DeployFailed | FleetInconsistent):
            self._emit(f"{event}.failed", self._redact(str(exc)))
            exc.reported = True
            return exc
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else self._redact(str(exc))
        if isinstance(exc, StepFailed):
            self._emit("step.failed", self._redact(exc.message), host=exc.host, step=exc.step)
        elif not isinstance(exc, DeployError | KeyboardInterrupt):
            reason = f"{exc.__class__.__name__}: {self._redact(str(exc))}"
        broken: list[str] = []
        unwell: list[str] = []
        if phase == "switch":
            broken, unwell = self._put_back()
        if event == "deploy" and phase in ("prepare", "switch"):
            self._remove_unfinished()
        if phase in ("prepare", "switch"):
            outcome = "rolled_back" if phase == "switch" and event == "deploy" else "failed"
            self._record_all(event, outcome, self.release, error=reason)
            self._run_on_failure_steps()
        placement = self._placement()
        if broken:
            error: DeployError = FleetInconsistent(
                f"{event} failed ({reason}) and putting back failed on {', '.join(broken)}: "
                "targets are on different releases",
                placement,
            )
        else:
            if phase in ("build", "connect"):
                what = "nothing was changed"
            elif phase == "prepare":
                what = "no target was switched; the unfinished release was removed"
            elif phase == "record":
                what = "every target is on the new release"
            else:
                what = "every target is back on the release it had"
                if unwell:
                    what += f" (which fails its checks too on {', '.join(unwell)})"
            error = DeployFailed(f"{event} failed: {reason}; {what}", placement)
        self._emit(f"{event}.failed", self._redact(str(error)), data={"placement": placement})
        error.reported = True
        return error

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
        """
        revert = self._revert_step()
        verifies = [s for s in self.phases.post if isinstance(s, Verify)]
        unwell: list[str] = []

        def put_back(target: Target) -> None:
            previous = target.state.current
            self._emit("revert", f"putting back {previous or '(no release)'}", host=target.name)
            if previous is None:
                unset = releases.switch_command(Layout(self.env.deploy_to), None)
                result = self._execute(target, unset, "rollback")
                if not result.ok:
                    raise StepFailed("rollback", target.name, result.summary(), result)
                target.current = None
                return
            self._run_on(revert, target, previous)
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
        layout = Layout(self.env.deploy_to)

        def remove(target: Target) -> None:
            if target.current == self.release:
                return
            result = self._execute(
                target, releases.remove_release_command(layout, [self.release]), "cleanup"
            )
            if not result.ok:
                raise StepFailed("cleanup", target.name, result.summary(), result)

        for name, error in self._parallel(remove, [t for t in self.targets if t.locked]).items():
            self._emit("warning", f"could not remove the unfinished release: {error}", host=name)

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
        layout = Layout(self.env.deploy_to)
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
            result = self._execute(target, releases.record_command(layout, entry), "record")
            if not result.ok:
                raise StepFailed("record", target.name, result.summary(), result)
            target.state = TargetState(
                current=target.current,
                releases=target.state.releases | ({release} if target.prepared else set()),
                log=(*target.state.log, _entry_dict(entry)),
                lock_owner=target.state.lock_owner,
                locked=target.state.locked,
            )

        errors = self._parallel(record, [t for t in self.targets if t.locked])
        for name, exc in errors.items():
            self._emit("warning", f"could not write the release log: {exc}", host=name)

    def _cleanup(self) -> dict[str, list[str]]:
        layout = Layout(self.env.deploy_to)
        removed: dict[str, list[str]] = {}

        def clean(target: Target) -> None:
            doomed = target.state.removable(self.env.keep_releases)
            removed[target.name] = doomed
            if doomed:
                result = self._execute(
                    target, releases.remove_release_command(layout, doomed), "cleanup"
                )
                if not result.ok:
                    raise StepFailed("cleanup", target.name, result.summary(), result)

        for name, error in self._parallel(clean, self.targets).items():
            self._emit("warning", f"cleanup failed: {self._redact(str(error))}", host=name)
        return removed

    # ------------------------------------------------------------------ rollback helpers

    def _rollback_target(self, to: str | None) -> str:
        wanted: dict[str, str | None] = {}
        for target in self.targets:
            state = target.state
            if to is not None:
                ok = to in state.releases and to in state.deployed()
                wanted[target.name] = to if ok else None
            else:
                wanted[target.name] = state.rollback_target()
        missing = [name for name, release in wanted.items() if release is None]
        if missing:
            what = (
                f"release {to} is not a deployed release" if to else "there is no earlier release"
            )
            raise DeployFailed(
                f"cannot roll back: {what} on {', '.join(missing)}; nothing changed",
                self._placement(),
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
        self._unlocking.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=15)
        layout = Layout(self.env.deploy_to)

        def unlock(target: Target) -> None:
            result = target.backend.execute(releases.unlock_command(layout))
            if not result.ok:
                raise StepFailed("unlock", target.name, result.summary(), result)
            target.locked = False

        for name, error in self._parallel(unlock, [t for t in self.targets if t.locked]).items():
            self._emit("warning", f"could not release the lock: {error}", host=name)

    def _close(self) -> None:
        for target in self.targets:
            target.backend.close()

    def _parallel(
        self, work: Callable[[Target], None], targets: Iterable[Target]
    ) -> dict[str, BaseException]:
        return fleet.run_parallel(work, targets, self.parallel, on_interrupt=self.cancelled.set)

    def _cleaning(self, what: str) -> contextlib.AbstractContextManager[None]:
        """While the fleet is put back or unlocked, Ctrl-C and SIGTERM say so instead of
        interrupting: stopping half-way would leave hosts on different releases or locked."""
        return fleet.signals_deferred(
            lambda: self._emit(
                "warning",
                f"still {what}; deploylib exits when it is done "
                "(the hosts are left on one release)",
            )
        )

    def _placement(self) -> dict[str, str | None]:
        return fleet.placement(self.targets, self.unreachable, self.release)

    def _redact(self, text: str) -> str:
        return self.env.redactor.redact(text)

    def _emit(
        self,
        kind: str,
        message: str = "",
        *,
        host: str | None = None,
        step: str | None = None,
        data: dict[str, object] | None = None,
    ) -> None:
        self.reporter.emit(Event(kind, message, host, step, data or {}))


def _bounded(op: Operation, remaining: float, default: float) -> Operation:
    """``op`` with its timeout (else ``default``) cut to what is left of the step's deadline."""
    if isinstance(op, Command | Upload):
        return replace(op, timeout=min(op.timeout or default, remaining))
    return op


def _entry_dict(entry: LogEntry) -> dict[str, object]:
    value = json.loads(entry.as_json())
    assert isinstance(value, dict)
    return value
