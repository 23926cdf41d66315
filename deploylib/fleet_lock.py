"""The deploy locks of a fleet: taken all or nothing (reading every target's state on the way),
kept alive by a heartbeat, checked before each batch goes live, released at the end — only
where the lock is this run's, also after a lock command that was cut off."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from deploylib import locks
from deploylib.backends.base import INTERRUPTED
from deploylib.errors import DeployFailed, LockHeld, LockLost, LockOwner, StepFailed
from deploylib.fleet import Target
from deploylib.remote import lock as remote_lock
from deploylib.remote import reading as state_reading
from deploylib.run_state import Run

#: seconds between two tries of a fleet's locks while ``--lock-wait`` waits for them
LOCK_POLL = 2.0


class FleetLock:
    """The locks of one run's targets."""

    def __init__(self, run: Run, *, heartbeat: float, token: str | None = None) -> None:
        self.run = run
        #: seconds between two touches of every held lock's heartbeat
        self.heartbeat = heartbeat
        #: a fixed token (tests); random otherwise
        self._fixed_token = token
        self._releasing = threading.Event()
        self._beating: threading.Thread | None = None
        #: per target: held while its heartbeat is touched (``retire`` waits for it)
        self._gates: dict[str, threading.Lock] = {}
        self._gates_lock = threading.Lock()
        #: targets whose lock is being released: their heartbeat is no longer touched
        self._retired: set[str] = set()

    def take(self, *, skip_unreachable: bool = False, wait: float = 0.0) -> None:
        """Lock every target, all or nothing, reading its state; then keep the locks' heartbeat
        going.

        With ``skip_unreachable`` (a rollback: an emergency), targets that cannot be reached
        are set aside in ``run.unreachable`` and the others go on. With ``wait``, locks held by
        another deploy are waited for, up to ``wait`` seconds: the locks this run took are
        released meanwhile (two waiting deploys never hold each other's hosts), who holds them
        is said, and the whole fleet is tried again every ``LOCK_POLL`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._take(skip_unreachable)
                return
            except LockHeld as held:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                self._unlock_mine()
                owners = "; ".join(f"{o.host}: held by {o.describe()}" for o in held.owners)
                self.run.emit(
                    "lock.wait",
                    f"waiting for the deploy lock ({left:.0f} s left): {owners}",
                    data={"seconds_left": round(left, 1)},
                )
                if self.run.cancelled.wait(min(LOCK_POLL, left)):
                    raise KeyboardInterrupt from None

    def _take(self, skip_unreachable: bool) -> None:
        run = self.run
        self._retired.clear()  # a try after a wait: every lock it takes is beaten again
        owner = locks.new_owner(
            run.release or None,
            run.clock().isoformat(timespec="seconds"),
            self.heartbeat,
            self._fixed_token,
        )
        run.lock_token = str(owner["token"])
        inherited = locks.inherited_token()
        command = remote_lock.lock_command(run.layout, owner, manifest=run.reads_manifests)

        def lock(target: Target) -> None:
            target.lock_sent()
            result = run.execute(target, command, "lock")
            state = state_reading.parse_state(result.stdout, run.layout)
            if state.read:
                target.read(state)
            if result.unreachable:
                target.connection_lost()
            if result.never_sent:
                target.lock_refused()  # nothing ran there: no lock to release
            holder = state.lock_owner or {}
            if result.exit_code == remote_lock.LOCK_HELD_EXIT:
                target.lock_refused()
                if inherited and holder.get("token") == inherited:
                    target.lock_inherited(inherited)
                    return
                age = state.lock_age
                reason = locks.stale_reason(holder, age)
                raise LockHeld([LockOwner(target.name, holder, age, reason)])
            if result.ok:
                target.lock_taken(run.lock_token)
                return
            cut_off = result.unreachable or result.timed_out or result.exit_code == INTERRUPTED
            if state.read and not cut_off:
                target.lock_refused()
            # else: cut off — it may have taken the lock; the release (by token) will see
            raise StepFailed("lock", target.name, run.summary(result), result)

        errors = run.each(lock, run.targets)
        if skip_unreachable:
            self._set_aside_unreachable(errors)
        held = [owner for e in errors.values() if isinstance(e, LockHeld) for owner in e.owners]
        if held:
            raise LockHeld(held, run.env.name)
        if errors:
            raise next(iter(errors.values()))
        self._beating = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self._beating.start()
        taken = [t.name for t in run.targets if t.owns_lock]
        run.emit(
            "lock.taken",
            f"locked {len(taken)} host{'s' if len(taken) != 1 else ''}",
            data={
                "hosts": taken,
                "inherited": [t.name for t in run.targets if t.token and not t.owns_lock],
            },
        )

    def _set_aside_unreachable(self, errors: dict[str, BaseException]) -> None:
        run = self.run
        lost = {
            name
            for name, e in errors.items()
            if isinstance(e, StepFailed) and e.result is not None and e.result.unreachable
        }
        for target in [t for t in run.targets if t.name in lost]:
            run.emit(
                "warning",
                f"unreachable, left as it is: {errors.pop(target.name)}",
                host=target.name,
            )
            target.backend.close()
            run.unreachable.append(target)
            run.targets.remove(target)
        if lost and not run.targets:
            raise DeployFailed("no host could be reached; nothing changed", run.placement())

    def _beat(self) -> None:
        """Touch every held lock's heartbeat each interval, all hosts at once: one slow host
        must not make the others' locks look stale."""
        run = self.run
        beat = remote_lock.heartbeat_command(run.layout, run.lock_token)

        def touch(target: Target) -> None:
            gate = self._gate(target)
            if not gate.acquire(blocking=False):
                return  # its last touch is still on its way (a slow host): no second one
            try:
                if (
                    target.owns_lock
                    and target.locked
                    and target.name not in self._retired
                    and not self._releasing.is_set()
                ):
                    run.note_lock_loss(target, target.backend.execute(beat))
            finally:
                gate.release()

        # a worker per host (up to 64), whatever ``parallel`` is: hosts that hang hold up
        # only their own touches
        workers = max(1, min(len(run.targets), 64))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="beat") as pool:
            while not self._releasing.wait(self.heartbeat):
                # no round waits for the last one, and a host whose touch is still on its way
                # gets no second one queued
                for target in list(run.targets):
                    if not self._gate(target).locked():
                        pool.submit(touch, target)

    def _gate(self, target: Target) -> threading.Lock:
        """Held while ``target``'s heartbeat is touched, and by ``retire``."""
        with self._gates_lock:
            return self._gates.setdefault(target.name, threading.Lock())

    def retire(self, target: Target) -> None:
        """``target``'s lock is about to be released: no touch of its heartbeat is on its way
        once this returns, and none starts after (it would find the lock gone and take it for
        lost). The others' heartbeat goes on until each of theirs is released: a host slow to
        finish never leaves the others' locks without one (they would look stale)."""
        with self._gate(target):
            self._retired.add(target.name)

    def unretire(self, target: Target) -> None:
        """``target``'s lock was not released after all (its unlock failed): beaten again
        until the run's end releases it."""
        with self._gate(target):
            self._retired.discard(target.name)

    def check(self, targets: Sequence[Target], *, confirmed: bool = False) -> None:
        """Make sure this run still holds the lock of ``targets`` (before they switch).
        ``confirmed``: the last command on every target ended by checking it (a push), so only
        the losses already known here are looked at, and nothing is run."""
        run = self.run

        def check(target: Target) -> None:
            if confirmed:
                return
            if target.token is None or target.lock_lost:
                return
            command = remote_lock.check_lock_command(run.layout, target.token)
            result = run.execute(target, command, "lock")
            if not result.ok and not target.lock_lost:
                raise StepFailed("lock", target.name, run.summary(result), result)

        errors = run.each(check, targets)
        lost = [t.name for t in targets if t.lock_lost]
        if lost:
            raise LockLost(
                f"the deploy lock on {', '.join(lost)} was removed or taken over by another deploy",
                run.placement(),
            )
        if errors:
            raise next(iter(errors.values()))

    def check_lost_after(self, done: str) -> None:
        """After the release went live: a lock lost meanwhile (its host's release log could not
        be written) ends the run with exit 3, every host where it is."""
        run = self.run
        lost = [t.name for t in run.targets if t.lock_lost]
        if lost:
            raise LockLost(
                f"{done} {run.release}, but the deploy lock on {', '.join(lost)} was removed or "
                "taken over meanwhile: the release log there has no line for it",
                run.placement(),
            )

    def stop_heartbeat(self) -> None:
        """No more touches of any lock's heartbeat (the run's end)."""
        self._releasing.set()
        if self._beating is not None:
            self._beating.join(timeout=15)

    def release(self) -> None:
        """Release every lock this run holds or may hold (a lock command that was cut off may
        have taken it): each removal checks the token, so another deploy's lock stays."""
        self._unlock_mine()
        self.stop_heartbeat()

    def _unlock_mine(self) -> None:
        """Remove every lock this run holds or may hold, by its token."""
        run = self.run

        def unlock(target: Target) -> None:
            self.retire(target)
            command = remote_lock.unlock_command(run.layout, run.lock_token)
            result = target.backend.execute(command)
            if not result.ok:
                raise StepFailed("unlock", target.name, run.summary(result), result)
            target.unlocked()

        mine = [
            t
            for t in run.targets
            if (t.owns_lock or t.lock_pending) and not t.lock_lost and run.lock_token
        ]
        errors = run.each(unlock, mine)
        released = [t.name for t in mine if t.name not in errors]
        if released:
            run.emit(
                "lock.released",
                f"unlocked {len(released)} host{'s' if len(released) != 1 else ''}",
                data={"hosts": released},
            )
        for name, error in errors.items():
            run.emit(
                "warning",
                f"could not release the lock: {error}; remove it with "
                f"deploylib unlock --env {run.env.name} once that host answers",
                host=name,
            )
