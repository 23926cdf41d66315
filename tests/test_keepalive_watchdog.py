"""The keepalive watchdog, over a transport that stands in for a peer: answering or silent."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import paramiko
import pytest

from deploylib.backends.ssh.keepalive import WATCHDOG, AliveMonitor


class Peer:
    """What the monitor uses of a paramiko transport; ``silent`` never answers a request."""

    def __init__(self, *, silent: bool) -> None:
        self.silent = silent
        self.requests = 0
        self.closed = threading.Event()

    def is_active(self) -> bool:
        return not self.closed.is_set()

    def global_request(self, kind: str, wait: bool = True) -> None:
        assert kind == "keepalive@openssh.com" and wait
        self.requests += 1
        if self.silent:
            self.closed.wait(30)  # paramiko's wait ends when the transport closes

    def close(self) -> None:
        self.closed.set()


def watch(peer: Peer, interval: float, count_max: int) -> AliveMonitor:
    return AliveMonitor(cast(paramiko.Transport, cast(Any, peer)), interval, count_max)


def test_a_silent_peer_is_closed_after_the_limit_and_not_before() -> None:
    peer = Peer(silent=True)
    started = time.monotonic()
    monitor = watch(peer, 0.4, 3)  # the limit: 1.2 s from the handshake
    try:
        assert peer.closed.wait(10)
        took = time.monotonic() - started
        assert monitor.dead
        assert took >= 1.2, took
        assert peer.requests == 1  # the first keepalive went out one interval in, unanswered
    finally:
        monitor.stop()


def test_an_answering_peer_stays_open_and_a_short_run_sends_no_keepalive() -> None:
    peer = Peer(silent=False)
    monitor = watch(peer, 0.6, 2)  # an answer may come up to 0.6 s late (a loaded machine)
    try:
        time.sleep(0.2)
        assert peer.requests == 0  # within the first interval: none sent
        time.sleep(2.4)  # twice the limit
        assert not peer.closed.is_set() and not monitor.dead
        assert peer.requests >= 2
    finally:
        monitor.stop()
    sent = peer.requests
    time.sleep(1.5)
    assert peer.requests <= sent + 1  # stopped: at most the one already on its way


def named(name: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == name}


def test_one_watchdog_thread_for_many_connections_and_none_once_all_stopped() -> None:
    before = named("deploylib-watchdog"), named("deploylib-keepalive")
    monitors = [watch(Peer(silent=False), 5.0, 3) for _ in range(20)]
    watchdogs = named("deploylib-watchdog")
    assert len(watchdogs) == 1 and len(watchdogs - before[0]) <= 1
    assert named("deploylib-keepalive") <= before[1]  # none started within the interval
    for monitor in monitors:
        monitor.stop()
    if not WATCHDOG._monitors:  # no other test's connection left open: the thread ends
        (watchdog,) = watchdogs
        watchdog.join(timeout=5)
        assert not watchdog.is_alive()


def test_a_single_keepalive_allowed_still_keeps_an_answering_peer_open() -> None:
    """alive_count_max = 1: the limit is one interval, so the first keepalive cannot wait a
    whole interval (the link would be judged dead before it was ever asked)."""
    peer = Peer(silent=False)
    monitor = watch(peer, 1.2, 1)  # keepalives every 0.6 s: an answer may come 0.6 s late
    try:
        time.sleep(3.0)
        assert not peer.closed.is_set() and not monitor.dead
        assert peer.requests >= 3
    finally:
        monitor.stop()


def test_one_connections_trouble_does_not_end_the_watch_over_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    troubled = watch(Peer(silent=False), 5.0, 3)

    def broken(now: float) -> bool:
        raise ValueError("a bug in one connection's look")

    monkeypatch.setattr(troubled, "look", broken)
    silent = Peer(silent=True)
    monitor = watch(silent, 0.2, 2)
    try:
        assert silent.closed.wait(10) and monitor.dead
    finally:
        monitor.stop()
        troubled.stop()


def test_a_silent_peer_is_closed_even_when_no_thread_can_be_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    silent = Peer(silent=True)
    monitor = watch(silent, 0.2, 2)  # the watchdog runs from here on

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    try:
        assert silent.closed.wait(10) and monitor.dead
        assert silent.requests == 0  # no keepalive thread could be had: closed all the same
    finally:
        monkeypatch.undo()
        monitor.stop()


def test_a_watchdog_that_could_not_start_is_started_by_the_next_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deadline = time.monotonic() + 10
    while named("deploylib-watchdog") and time.monotonic() < deadline:
        time.sleep(0.05)  # other tests' watchdog ended: the next connection starts one
    assert not named("deploylib-watchdog")

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(RuntimeError):
        watch(Peer(silent=False), 0.2, 2)
    monkeypatch.undo()
    silent = Peer(silent=True)
    monitor = watch(silent, 0.2, 2)
    try:
        assert silent.closed.wait(10) and monitor.dead
    finally:
        monitor.stop()
