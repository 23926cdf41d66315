"""Running steps on targets: which targets a step runs on, the context each one sees, the step's
deadline over all its operations, and the retried checks of ``verify``.

A switch's first operation moves ``current``: on success the target is on the new release; cut
off (unreachable, timed out, interrupted), it may or may not be (``uncertain``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from deploylib import release_delta
from deploylib.backends.base import INTERRUPTED
from deploylib.check_retries import retry_checks
from deploylib.commands import (
    FALLBACK_EXIT,
    Command,
    Operation,
    Probe,
    Result,
    Upload,
    took_mark,
)
from deploylib.context import StepContext
from deploylib.digests import file_digest
from deploylib.errors import StepFailed, VerifyFailed
from deploylib.fleet import Target
from deploylib.pipeline import Phases
from deploylib.remote import images
from deploylib.remote import release as remote_release
from deploylib.run_state import Run
from deploylib.steps import Push, Retry, Step


class StepExecution:
    """Steps of one run on its targets, and local steps on ``controller``."""

    def __init__(self, run: Run, phases: Phases, controller: Target) -> None:
        self.run = run
        self.phases = phases
        #: this machine, where local steps (build) run
        self.controller = controller

    def run_local_steps(self) -> None:
        """The local steps (build), then a check that the artifact was written."""
        run = self.run
        for local_step in self.phases.local:
            self.run_on(local_step, self.controller)
        if run.image:
            self.push_image()
        elif any(s.ships_artifact for s in self.phases.prepare):
            check = remote_release.artifact_check(run.artifact)
            result = run.execute(self.controller, check, "build")
            run.artifact_bytes = remote_release.artifact_footprint(run.artifact)
            run.artifact_digest = artifact_digest(run.artifact)
            if result.ok and any(s.reads_manifest for s in self.phases.prepare):
                # the artifact's manifest is read while the targets are locked
                threading.Thread(
                    target=release_delta.manifest_of_built, args=(run.artifact,), daemon=True
                ).start()
            if not result.ok:
                raise StepFailed(
                    "build",
                    "local",
                    f"the build did not write {{artifact}} ({run.artifact})",
                    result,
                )

    def push_image(self) -> None:
        """The image the build made, pushed to the registry from this machine; the digest it
        got there is what every target checks the image it pulls against."""
        run = self.run
        for ship in self.phases.prepare:
            if not isinstance(ship, Push):
                continue
            ctx = self.context(self.controller)
            run.image_ref = ctx.values["image"]
            for op in ship.controller_operations(ctx):
                result = run.execute(self.controller, op, "push")
                if not result.ok:
                    raise StepFailed("push", "local", run.summary(result), result)
                assert isinstance(op, Command)
                run.image_digest = images.digest_from(result.stdout, ctx.values["image"])
            if not run.image_digest and not run.dry:
                run.emit("warning", "the registry named no digest for the image: not checked")

    def run_step(
        self,
        step: Step,
        targets: Sequence[Target],
        *,
        release: str | Mapping[str, str] | None = None,
        attempts: int | None = None,
    ) -> None:
        """``step`` on those of ``targets`` it is for, in parallel; raises the first error.
        ``release``: the run's, one for all, or one per target name (a rollback's);
        ``attempts``: of a checking step, instead of its own (a bake's single attempt)."""
        errors = self.try_step(step, targets, release=release, attempts=attempts)
        if errors:
            raise next(iter(errors.values()))

    def try_step(
        self,
        step: Step,
        targets: Sequence[Target],
        *,
        release: str | Mapping[str, str] | None = None,
        attempts: int | None = None,
    ) -> dict[str, BaseException]:
        """``step`` as ``run_step`` runs it; the errors by target name instead of the first."""
        if step.placement == "local":
            self.run_on(step, self.controller, release if isinstance(release, str) else None)
            return {}

        def release_of(target: Target) -> str | None:
            return release.get(target.name) if isinstance(release, Mapping) else release

        chosen = self.targets_for(step, targets)
        return self.run.each(
            lambda t: self.run_on(step, t, release_of(t), attempts=attempts), chosen
        )

    def targets_for(self, step: Step, targets: Sequence[Target]) -> list[Target]:
        every = self.run.targets
        if step.placement == "once":
            for target in every:
                if set(step.roles) & set(target.host.roles):
                    return [target] if target in targets else []
            return [every[0]] if every and every[0] in targets else []
        if step.roles:
            return [t for t in targets if set(step.roles) & set(t.host.roles)]
        return list(targets)

    def context(
        self, target: Target, release: str | None = None, *, restoring: bool = False
    ) -> StepContext:
        run = self.run
        return StepContext(
            env=run.env,
            host=target.host,
            release=release or run.release,
            revision=run.revision,
            artifact=run.artifact,
            previous=target.state.current,
            artifact_bytes=run.artifact_bytes,
            artifact_digest=run.artifact_digest,
            previous_manifest=target.state.manifest,
            lock_token=target.token or run.lock_token,
            restoring=restoring,
            guard_token=target.token or "",
            extra=target.slot.values if target.slot else None,
            image=run.image,
            image_digest=run.image_digest,
        )

    def run_on(
        self,
        step: Step,
        target: Target,
        release: str | None = None,
        *,
        restoring: bool = False,
        attempts: int | None = None,
    ) -> None:
        """``step`` on one target, every operation within what is left of the step's deadline."""
        run = self.run
        ctx = self.context(target, release, restoring=restoring)
        started = time.monotonic()
        run.emit("step.start", host=target.name, step=step.name)
        if step.retry is not None:
            retry = step.retry if attempts is None else replace(step.retry, attempts=attempts)
            self.check(step, retry, target, ctx)
        else:
            if step.moves_current:
                target.switching(None if restoring else ctx.release)
            deadline = started + run.env.step_timeout
            outputs: list[str] = []
            for index, op in enumerate(step.operations(ctx)):
                if target.lock_lost:
                    raise StepFailed(step.name, target.name, "the deploy lock here was lost")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(
                        step.name,
                        target.name,
                        f"the step took longer than {run.env.step_timeout:g} s",
                    )
                bounded = _bounded(op, remaining, run.env.command_timeout)
                result = run.execute(target, bounded, step.name)
                if isinstance(op, Command) and op.fallback and result.exit_code == FALLBACK_EXIT:
                    run.emit("warning", run.summary(result, 300), host=target.name)
                    remaining = deadline - time.monotonic()
                    bounded = _bounded(op.fallback, remaining, run.env.command_timeout)
                    result = run.execute(target, bounded, step.name)
                if step.moves_current and index == 0:
                    result = _moved(target, ctx.release, bounded, result)
                if not result.ok:
                    if result.unreachable:
                        target.connection_lost()
                    raise StepFailed(step.name, target.name, run.summary(result), result)
                outputs.append(result.stdout)
            schema = step.schema_from(outputs)
            if schema is not None and not run.dry:
                # the release log is output too: a secret the command printed stays out of it
                run.schema = tuple(run.redact(name) for name in schema)
        run.emit(
            "step.ok",
            host=target.name,
            step=step.name,
            # every operation of it ended with exit status 0
            data={"seconds": round(time.monotonic() - started, 3), "exit_code": 0},
        )

    def check(self, step: Step, retry: Retry, target: Target, ctx: StepContext) -> None:
        """The step's checks, retried until they pass, its attempts run out or its deadline."""
        run = self.run

        def on_attempt(attempt: int, result: Result) -> None:
            run.warn_of(result, target, step.name)
            message = "ok" if result.ok else run.summary(result, 300)
            run.emit(
                "check.attempt",
                message,
                host=target.name,
                step=step.name,
                # a failed attempt with attempts left is a wait, not yet a failure
                data={"attempt": attempt, "ok": result.ok, "last": attempt >= retry.attempts},
            )

        operations = step.operations(ctx)
        for op in operations:
            run.emit("operation", op.line, host=target.name, step=step.name)
        result = retry_checks(
            target.backend,
            operations,
            attempts=retry.attempts,
            wait=retry.wait,
            deadline=min(retry.deadline or run.env.step_timeout, run.env.step_timeout),
            cancelled=run.cancelled,
            on_attempt=on_attempt,
        )
        if result.ok and ctx.release == run.release:
            for op in operations:
                if isinstance(op, Probe) and op.line not in run.verified:
                    run.verified.append(op.line)
        if not result.ok:
            if result.unreachable:
                target.connection_lost()
            raise VerifyFailed(
                step.name,
                target.name,
                f"gave up after {retry.attempts} attempts: {run.summary(result, 300)}",
                result,
            )


def artifact_digest(artifact: str) -> str:
    """The sha256 of the artifact the build wrote ("" when it wrote none)."""
    try:
        return file_digest(Path(artifact))
    except OSError:
        return ""


def _moved(target: Target, release: str, op: Operation, result: Result) -> Result:
    """What the first operation of a switch says of where ``current`` is now; its result, less
    the line that said so (a switch run with its restart: ``Command.moved_mark``)."""
    if isinstance(op, Command) and op.moved_mark:
        moved, result = took_mark(result, op.moved_mark)
        if moved:
            target.moved_to(release)
        elif result.ok or result.unreachable or result.timed_out or result.exit_code == INTERRUPTED:
            target.may_have_moved()  # (passed without its mark: a shell start-up that ate it)
        return result
    if result.ok:
        target.moved_to(release)
    elif result.unreachable or result.timed_out or result.exit_code == INTERRUPTED:
        target.may_have_moved()
    return result


def _bounded(op: Operation, remaining: float, default: float) -> Operation:
    """``op`` with its timeout (else ``default``) cut to what is left of the step's deadline."""
    if isinstance(op, Command | Upload):
        return replace(op, timeout=min(op.timeout or default, remaining))
    return replace(op, timeout=min(op.timeout, remaining))
