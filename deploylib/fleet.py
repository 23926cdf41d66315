"""The targets of one run, and working on all of them at once.

``run_parallel`` runs a piece of work on every target with bounded concurrency and turns Ctrl-C
into a halt of every backend; ``placement`` says which release each target is on, as far as the
run knows.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from deploylib.backends.base import Backend
from deploylib.hosts import Host
from deploylib.remote.state import TargetState
from deploylib.slots import Slot, SlotState
from deploylib.whereabouts import Doubt, Whereabouts
from deploylib.workers import submit


@dataclass
class Target:
    """One host during one run: its backend and what we know of it.

    What happens to it during the run is told through the named transitions below; the fields
    are read by the rest of the run, written only here."""

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
    #: the release a switch here moves ``current`` to
    moving_to: str | None = None
    #: lost during the switch: current may be the old or the new release
    uncertain: bool = False
    unreachable: bool = False
    #: why it failed, when it failed within the strategy's ``max_fail`` and was put back on the
    #: release it had while the others went on: the new release is not wanted here
    left_behind: str | None = None
    #: blue-green: the slot this run works on here (its ``{port}`` and ``{slot}``): where the
    #: new release starts and is checked, or where a release is gone back to
    slot: Slot | None = None

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def locked(self) -> bool:
        """This run may change the target: it acts under a lock it still holds."""
        return self.token is not None and not self.lock_lost

    # ---------------------------------------------------------------- the lock

    def lock_sent(self) -> None:
        """A lock command is on its way: until its outcome is known, it may have taken it."""
        self.lock_pending = True

    def lock_taken(self, token: str) -> None:
        self.lock_pending = False
        self.token, self.owns_lock = token, True

    def lock_inherited(self, token: str) -> None:
        """The deploy this run runs inside holds the lock: act under its token."""
        self.lock_pending = False
        self.token = token

    def lock_refused(self) -> None:
        """The lock command ran to its end and took nothing."""
        self.lock_pending = False

    def lock_gone(self) -> None:
        """The lock here was removed or taken over while this run held it."""
        self.lock_lost = True

    def unlocked(self) -> None:
        self.owns_lock = self.lock_pending = False
        self.token = None

    # ---------------------------------------------------------------- what it is on

    def read(self, state: TargetState) -> None:
        """Its state was read: its ``current`` as the run found it."""
        self.state = state
        self.current = state.current

    def connection_lost(self) -> None:
        self.unreachable = True

    def release_prepared(self) -> None:
        self.prepared = True

    def switching(self, release: str | None) -> None:
        """A step that moves ``current`` to ``release`` is about to run here: it must be put
        back on failure. A put-back passes None: if it is cut off, the target is still on the
        release it had or on the one the run moved it to."""
        self.switched = True
        if release is not None:
            self.moving_to = release

    def moved_to(self, release: str | None) -> None:
        """``current`` is known to point at ``release`` (``None``: no release)."""
        self.current, self.uncertain = release, False

    def may_have_moved(self) -> None:
        """A move of ``current`` was cut off: it may or may not have happened."""
        self.uncertain = True

    def put_back_alone(self, reason: str) -> None:
        """Back on the release it had after failing (``reason``) within the failure budget:
        the run goes on without it, and a later failure need not put it back again."""
        self.left_behind = reason
        self.switched = self.prepared = False
        self.moving_to = None

    def on_slot(self, slot: Slot | None) -> None:
        """The steps that follow work on ``slot``: they see its port and name."""
        self.slot = slot

    def slots_recorded(self, slots: SlotState) -> None:
        """The slot record here is now ``slots``."""
        self.state = replace(self.state, slots=slots)

    def recorded(self, state: TargetState) -> None:
        """The run's line is in the release log: ``state`` is what the target is now."""
        self.state = state


class OpenedAhead:
    """The run's targets, made in a thread of their own while the caller goes on (the build),
    then each one's connection opened ahead of its first command (``Backend.open_ahead``), at
    most ``parallel`` at once. Nothing is sent to a target: its first command waits for the
    open, and gets its failure if it failed meanwhile (one that failed earlier is tried again).

    The threads are daemons and nobody waits for the opens: a run that ends before them (a
    failed build, Ctrl-C) closes its targets, and an open that ends after that closes what it
    opened."""

    def __init__(self, make: Callable[[], list[Target]], parallel: int) -> None:
        self._made: list[Target] | None = None
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(
            target=self._make_and_open, args=(make, parallel), name="open-ahead", daemon=True
        )
        self._thread.start()

    def _make_and_open(self, make: Callable[[], list[Target]], parallel: int) -> None:
        try:
            made = make()
        except BaseException as exc:  # handed to the caller by ``targets``
            self._error = exc
            return
        self._made = made
        if self._cancelled.is_set():  # the caller gave up waiting for them: nobody closes them
            for target in made:
                target.backend.close()
            return
        waiting = deque(target.backend for target in made)

        def open_next() -> None:
            while not self._cancelled.is_set():
                try:
                    backend = waiting.popleft()
                except IndexError:
                    return
                with contextlib.suppress(Exception):  # never raises; a bug must not stop it
                    backend.open_ahead()

        for _ in range(min(parallel, len(made))):
            submit(open_next)

    def targets(self) -> list[Target]:
        """The targets, once made (their connections may still be opening). Interrupted
        while waiting for them (Ctrl-C), it gives them up: once made, they are closed."""
        try:
            self._thread.join()
        except BaseException:
            self._cancelled.set()
            raise
        if self._error is not None:
            raise self._error
        assert self._made is not None
        return self._made


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
    if not targets:
        return {}
    gate = _Gate()
    waiting = deque(targets)
    raised: dict[str, BaseException] = {}

    def lane() -> None:
        """Work on the next target waiting, until none waits or the gate is closed."""
        while True:
            try:
                target = waiting.popleft()
            except IndexError:
                return
            if not gate.enter():
                return  # interrupted before it started
            try:
                work(target)
            except BaseException as exc:  # the error of that target, for the caller
                raised[target.name] = exc
            finally:
                gate.leave()

    # even one target is worked on in a thread of its own: Ctrl-C must land in this thread's
    # wait, never inside a backend's library code (a lock taken there and never released).
    # At most ``parallel`` lanes, each taking the next target in order (in order when 1), on
    # threads kept from the last step's work (``deploylib.workers``)
    lanes: list[Future[None]] = []
    try:
        for _ in range(max(1, min(parallel, len(targets)))):
            lanes.append(submit(lane))
        for future in lanes:
            error = future.exception()
            if error is not None:  # a lane's own failure, not a target's
                raise error
    except KeyboardInterrupt:
        # a further Ctrl-C meanwhile must not cut this short: a backend left halted, or work
        # still starting after this returned, would spoil the caller's clean-up
        _shielded(on_interrupt)
        for target in targets:
            _shielded(target.backend.halt)
        gate.close_and_wait()
        for target in targets:
            _shielded(target.backend.resume)
        raise
    return {t.name: raised[t.name] for t in targets if t.name in raised}


def _shielded(action: Callable[[], None]) -> None:
    """Do ``action`` to its end, doing it again when a Ctrl-C cut it short (each of them may
    be done twice: a halt, a resume, setting an event)."""
    while True:
        try:
            action()
            return
        except KeyboardInterrupt:
            continue


class _Gate:
    """Counts the pieces of work running; once closed, none more starts.

    The count is kept by the workers themselves, so it holds also for work whose future the
    interrupt kept the main thread from ever seeing (an interrupt inside ``submit`` may leave
    a lane running that the main thread never got)."""

    def __init__(self) -> None:
        # taken as a plain lock (its ``with`` is one C call: a Ctrl-C cannot land between the
        # lock taken and the block that releases it, as it can in ``Condition.__enter__``)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._running = 0

    def enter(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._running -= 1
            self._cond.notify_all()

    def close_and_wait(self) -> None:
        """Close, then wait until no work runs, whatever further Ctrl-Cs arrive meanwhile."""
        while True:
            try:
                with self._lock:
                    self._closed = True
                    while self._running:
                        self._cond.wait(0.1)
                return
            except KeyboardInterrupt:
                continue


def placement(
    targets: Iterable[Target], unreachable: Iterable[Target], release: str
) -> Whereabouts:
    """Which release each target is on, as far as this run knows, and what it cannot know."""
    releases: dict[str, str | None] = {}
    doubts: dict[str, Doubt] = {}
    for t in targets:
        if t.uncertain:
            releases[t.name] = t.state.current
            doubts[t.name] = Doubt("switching", t.moving_to or release)
        elif not t.state.read and (t.unreachable or not t.switched):
            releases[t.name] = None
            doubts[t.name] = Doubt("unread")
        else:
            releases[t.name] = t.current
            if t.unreachable:
                doubts[t.name] = Doubt("unreachable")
    for t in unreachable:
        releases[t.name] = t.state.current
        doubts[t.name] = Doubt("untouched")
    return Whereabouts(releases, doubts)
