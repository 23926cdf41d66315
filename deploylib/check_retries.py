"""The retry loop of a step that checks the release (``verify``): its operations run through a
backend with tenacity until all pass in one attempt, a number of attempts, a wait between them
and an overall deadline, every attempt reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from deploylib.commands import Operation, Probe, Result

if TYPE_CHECKING:
    from deploylib.backends.base import Backend


class _CheckFailed(Exception):
    def __init__(self, result: Result) -> None:
        self.result = result


def retry_checks(
    backend: Backend,
    operations: Sequence[Operation],
    *,
    attempts: int,
    wait: float,
    deadline: float | None,
    on_attempt: Callable[[int, Result], None],
    cancelled: threading.Event | None = None,
) -> Result:
    """Run every operation until all pass in one attempt; the last failure if they never do.

    ``deadline`` (seconds) bounds the whole verify, not only the start of each attempt: every
    operation's own timeout (a command's, a probe's) is cut to what is left of it, the wait
    between attempts never runs past it, and no attempt starts once it has passed. So a
    verify ends within about ``deadline`` seconds whatever the checks meet. ``cancelled`` ends
    the wait between attempts at once and stops the retries.
    """
    from tenacity import (
        RetryCallState,
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        stop_when_event_set,
    )
    from tenacity.stop import stop_base

    clock = _Deadline(deadline)

    class _UntilDeadline(stop_base):
        def __call__(self, retry_state: RetryCallState) -> bool:
            return clock.passed()

    def pause(retry_state: RetryCallState) -> float:
        left = clock.left()
        return wait if left is None else max(0.0, min(wait, left))

    def sleep(seconds: float) -> None:
        if cancelled is None:
            time.sleep(seconds)
        else:
            cancelled.wait(seconds)

    stop: stop_base = stop_after_attempt(1 if backend.dry else attempts) | _UntilDeadline()
    if cancelled is not None:
        stop = stop | stop_when_event_set(cancelled)
    retrying = Retrying(
        stop=stop,
        wait=pause,
        sleep=sleep,
        retry=retry_if_exception_type(_CheckFailed),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                result = _attempt(backend, operations, clock)
                on_attempt(attempt.retry_state.attempt_number, result)
                if not result.ok:
                    raise _CheckFailed(result)
    except _CheckFailed as failed:
        return failed.result
    return Result(0)


class _Deadline:
    """What is left of a verify's deadline (None: no deadline)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self._end is None else self._end - time.monotonic()

    def passed(self) -> bool:
        left = self.left()
        return left is not None and left <= 0


def _attempt(backend: Backend, operations: Sequence[Operation], clock: _Deadline) -> Result:
    for op in operations:
        left = clock.left()
        if left is not None and left <= 0:
            return Result(
                124, stderr=f"the verify deadline of {clock.seconds:g} s passed", timed_out=True
            )
        result = backend.execute(op if left is None else _cut(op, left))
        if not result.ok:
            return result
    return Result(0, "all checks passed")


def _cut(op: Operation, left: float) -> Operation:
    """``op`` with its timeout cut to ``left`` seconds (a command without one gets ``left``)."""
    if isinstance(op, Probe):
        return replace(op, timeout=min(op.timeout, left))
    return replace(op, timeout=min(op.timeout or left, left))
