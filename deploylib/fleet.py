"""The targets of one run, and working on all of them at once.

``run_parallel`` runs a piece of work on every target with bounded concurrency and turns Ctrl-C
into a halt of every backend; ``placement`` says which release each target is on, as far as the
run knows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from deploylib.backends.base import Backend
from deploylib.hosts import Host
from deploylib.remote.state import TargetState


@dataclass
class Target:
    """One host during one run: its backend and what we know of it."""

    host: Host
    backend: Backend
    #: as read when it was locked (``current_kind == "unknown"`` until then)
    state: TargetState = field(default_factory=lambda: TargetState(current_kind="unknown"))
    #: the token of the lock this run acts under here (its own, or the deploy it runs inside);
    #: every change it makes is guarded by it
    token: str | None = None
    #: this run took the lock and must release it
    owns_lock: bool = False
    #: a lock command was sent whose outcome is unknown (cut off, unreachable)
    lock_pending: bool = False
    #: the lock was removed or taken over while this run held it
    lock_lost: bool = False
    prepared: bool = False
    switched: bool = False
    current: str | None = None
    #: lost during the switch: current may be the old or the new release
    uncertain: bool = False
    unreachable: bool = False

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def locked(self) -> bool:
        """This run may change the target: it acts under a lock it still holds."""
        return self.token is not None and not self.lock_lost


def run_parallel(
    work: Callable[[Target], None],
    targets: Iterable[Target],
    parallel: int,
    *,
    on_interrupt: Callable[[], None] = lambda: None,
) -> dict[str, BaseException]:
    """Run ``work`` on each target, at most ``parallel`` at once (in that order when 1); the
    errors by target name.

    Ctrl-C reaches only this (the main) thread. It halts every target's backend — what runs is
    aborted, nothing new starts — then waits until every piece of work that started has
    returned (each operation has a deadline), resumes the backends for the clean-up, and
    re-raises: when the caller cleans up, no worker is still changing a target behind its
    back. What had not started by then never does."""
    targets = list(targets)
    errors: dict[str, BaseException] = {}
    if not targets:
        return errors
    gate = _Gate()

    def gated(target: Target) -> None:
        if not gate.enter():
            return  # interrupted before it started
        try:
            work(target)
        finally:
            gate.leave()

    # even one target is worked on in a thread of its own: Ctrl-C must land in this thread's
    # wait, never inside a backend's library code (a lock taken there and never released)
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))))
    futures: dict[str, Future[None]] = {}
    try:
        try:
            for target in targets:
                futures[target.name] = pool.submit(gated, target)
            for name, future in futures.items():
                error = future.exception()
                if error is not None:
                    errors[name] = error
        except KeyboardInterrupt:
            on_interrupt()
            for target in targets:
                target.backend.halt()
            gate.close_and_wait()
            for target in targets:
                target.backend.resume()
            raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return errors


class _Gate:
    """Counts the pieces of work running; once closed, none more starts.

    The count is kept by the workers themselves, so it holds also for work whose thread or
    future the interrupt kept the main thread from ever seeing (an interrupt inside
    ``ThreadPoolExecutor.submit`` starts a thread the pool does not know yet)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0

    def enter(self) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def close_and_wait(self) -> None:
        """Close, then wait until no work runs, whatever further Ctrl-Cs arrive meanwhile."""
        while True:
            try:
                with self._cond:
                    self._closed = True
                    while self._running:
                        self._cond.wait(0.1)
                return
            except KeyboardInterrupt:
                continue


def placement(
    targets: Iterable[Target], unreachable: Iterable[Target], release: str
) -> dict[str, str | None]:
    """Which release each target is on, as far as this run knows; what it cannot know, said."""
    result: dict[str, str | None] = {}
    for t in targets:
        if t.uncertain:
            result[t.name] = (
                f"{t.state.current or '(no release)'} or {release} (unreachable while switching)"
            )
        elif not t.state.read and (t.unreachable or not t.switched):
            result[t.name] = "unknown (its state could not be read)"
        elif t.unreachable:
            result[t.name] = f"{t.current or '(no release)'} (unreachable; last known)"
        else:
            result[t.name] = t.current
    for t in unreachable:
        result[t.name] = f"{t.state.current or 'unknown'} (unreachable; not changed)"
    return result
