"""``submit``: work run on threads kept for the next piece of work, not one thread per piece.

A deploy runs each step on every host at once, and opens every host's connection ahead: with a
new pool per step, a 40-host deploy started about 220 threads, each start waiting until the new
thread ran, on two CPUs shared with the hosts' own work. Here a thread that finished its work
waits for the next (a minute at most, then ends), so a run starts as many threads as it ever
had pieces of work running at once.

The threads are daemons: work still running when the program ends does not hold it up (every
remote operation has its own deadline; what waits for work waits on its future).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

#: seconds an idle thread waits for more work before it ends
IDLE = 60.0


class Workers:
    """Threads that run submitted work, each kept for the next while work keeps coming."""

    def __init__(self, name: str = "deploylib-worker", idle: float = IDLE) -> None:
        self.name = name
        self.idle_seconds = idle
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: threads waiting for work that no submitted piece has counted on yet
        self._idle = 0
        self.started = 0

    @property
    def waiting(self) -> int:
        """Threads waiting for work that no piece submitted has counted on yet."""
        with self._lock:
            return self._idle

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` on a waiting thread, or on a new one when none waits."""
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = work()
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._lock:
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1  # that thread will take a job: this one or one just before
        if claimed:
            try:
                self._jobs.put(job)
            except BaseException:  # a Ctrl-C before the job was queued: the claim given back
                with self._lock:
                    self._idle += 1
                raise
        else:
            # a new thread is handed its first job itself, never through the queue: a Ctrl-C
            # while it is being made leaves no job queued for a thread that never came (the
            # queue gets a job only for a thread that waits for one)
            threading.Thread(target=self._serve, args=(job,), name=self.name, daemon=True).start()
            with self._lock:
                self.started += 1
        return future

    def _serve(self, first: Callable[[], None]) -> None:
        job: Callable[[], None] | None = first
        while True:
            if job is not None:
                job()
                job = None  # what the job held is not kept alive by a waiting thread
                with self._lock:
                    self._idle += 1
            try:
                job = self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody counted on this thread: it may end
                        self._idle -= 1
                        return
                # a submit counted on it a moment ago: its job is on its way


#: the workers of this process
WORKERS = Workers()


def submit(work: Callable[[], T]) -> Future[T]:
    """Run ``work`` on one of this process's worker threads; its future."""
    return WORKERS.submit(work)
