"""The worker threads: kept for the next piece of work, as many as ever ran at once, ended when
idle; a piece's result or error reaches its future."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from deploylib.workers import Workers


def alive(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == name)


def test_pieces_one_after_the_other_share_one_thread() -> None:
    workers = Workers(name="test-workers-serial")
    seen = {workers.submit(threading.get_ident).result(timeout=10) for _ in range(20)}
    assert workers.started == 1
    assert len(seen) == 1


def test_pieces_at_once_get_a_thread_each_and_later_pieces_reuse_them() -> None:
    workers = Workers(name="test-workers-burst")
    release = threading.Event()
    running = threading.Semaphore(0)

    def hold() -> int:
        running.release()
        release.wait(10)
        return threading.get_ident()

    first = [workers.submit(hold) for _ in range(6)]
    for _ in range(6):  # all six run at once: none waited for another to end
        assert running.acquire(timeout=10)
    release.set()
    idents = {f.result(timeout=10) for f in first}
    assert len(idents) == 6 and workers.started == 6
    deadline = time.monotonic() + 10
    while workers.waiting < 6 and time.monotonic() < deadline:  # the six wait for work again
        time.sleep(0.01)
    again = [workers.submit(hold) for _ in range(6)]
    assert {f.result(timeout=10) for f in again} <= idents
    assert workers.started == 6


def test_an_error_reaches_the_future_and_the_thread_serves_on() -> None:
    workers = Workers(name="test-workers-error")

    def fail() -> None:
        raise KeyboardInterrupt("from a worker")  # even a BaseException is handed on

    with pytest.raises(KeyboardInterrupt, match="from a worker"):
        workers.submit(fail).result(timeout=10)
    assert workers.submit(lambda: 42).result(timeout=10) == 42
    assert workers.started == 1


def test_idle_threads_end() -> None:
    workers = Workers(name="test-workers-idle", idle=0.2)
    release = threading.Event()
    futures = [workers.submit(lambda: release.wait(10)) for _ in range(3)]
    assert alive("test-workers-idle") == 3
    release.set()
    for future in futures:
        future.result(timeout=10)
    deadline = time.monotonic() + 10
    while alive("test-workers-idle") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive("test-workers-idle") == 0
    # and work submitted after they ended still runs
    assert workers.submit(lambda: "late").result(timeout=10) == "late"


def test_an_interrupt_while_a_thread_is_made_leaves_nothing_counted_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C can land while a new worker thread is made (its constructor is Python code):
    no job may wait in the queue for a thread that never came, and no thread may be counted
    as waiting that does not exist (the next piece of work would wait for it forever)."""
    workers = Workers(name="test-workers-interrupted", idle=0.3)

    class InterruptedOnce(threading.Thread):
        armed = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if InterruptedOnce.armed:
                InterruptedOnce.armed = False
                raise KeyboardInterrupt
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(threading, "Thread", InterruptedOnce)
    with pytest.raises(KeyboardInterrupt):
        workers.submit(lambda: None)
    monkeypatch.undo()
    assert workers.waiting == 0
    # two pieces at once still run at once
    barrier = threading.Barrier(2, timeout=10)
    both = [workers.submit(barrier.wait) for _ in range(2)]
    for future in both:
        future.result(timeout=10)
    # and once every thread idled out, new work still runs
    deadline = time.monotonic() + 10
    while alive("test-workers-interrupted") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers.submit(lambda: "after").result(timeout=10) == "after"


def test_a_claim_on_a_waiting_thread_is_given_back_when_a_ctrl_c_stops_the_submit() -> None:
    workers = Workers(name="test-workers-claim", idle=0.3)
    workers.submit(lambda: None).result(timeout=10)
    deadline = time.monotonic() + 10
    while workers.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    real = workers._jobs

    class Interrupted:
        def put(self, job: object) -> None:
            raise KeyboardInterrupt  # Ctrl-C after the claim, before the job was queued

        def get(self, timeout: float) -> object:
            return real.get(timeout=timeout)

    workers._jobs = Interrupted()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        workers.submit(lambda: None)
    workers._jobs = real
    assert workers.waiting == 1  # the thread is counted as waiting again
    # and, idle, it ends: no thread is left waiting for a job that never comes
    deadline = time.monotonic() + 10
    while alive("test-workers-claim") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive("test-workers-claim") == 0
