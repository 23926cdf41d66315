"""Bounded GET loops on loopback in several threads, with a fresh connection per request or one
kept-alive connection per thread, for the tests and benchmarks that count failed requests while
a deploy replaces the server or reloads the proxy in front of it.

A keep-alive client that finds its connection closed under it (the proxy was reloaded and its
old worker closed the connection after the request in flight) fails that request; a client that
retries an idempotent GET once, on a new connection, does not. ``first_failures`` counts the
requests whose first attempt failed on a connection error (what a client without a retry
sees); ``failures`` those that still failed after the one retry, or were answered with a status
other than 200 (never retried). Fresh-connection clients never retry: both lists are the same."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter


class _Connection(http.client.HTTPConnection):
    """An ``HTTPConnection`` that counts the TCP connections it opens (http.client reopens one
    by itself after a response that said ``Connection: close``)."""

    def __init__(self, port: int, opened: list[int]) -> None:
        super().__init__("127.0.0.1", port, timeout=5)
        self._opened = opened

    def connect(self) -> None:
        super().connect()
        self._opened.append(1)


class Clients:
    """``threads`` clients GETting ``path`` from 127.0.0.1:``port`` in a loop until stopped,
    ``max_requests`` were made or ``max_seconds`` passed. ``keep_alive``: one connection per
    thread, reused, and one retry on a connection error; else a fresh connection per request.
    ``timeline`` holds ``(time.time(), body)`` of every answer, in the order they came."""

    def __init__(
        self,
        port: int,
        *,
        threads: int = 4,
        keep_alive: bool = False,
        path: str = "/",
        max_requests: int = 100_000,
        max_seconds: float = 60,
    ) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.path = path
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.bodies: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []
        self.first_failures: list[str] = []
        self.failures: list[str] = []
        self.opened: list[int] = []  # one item per TCP connection opened
        self.told_to_close = 0  # answers that said "Connection: close" (the server ends it)
        self._made = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, daemon=True, name=f"client-{n}")
            for n in range(threads)
        ]

    @property
    def answered(self) -> int:
        """Requests finished so far: answered, or failed after any retry."""
        with self._lock:
            return sum(self.bodies.values()) + len(self.failures)

    def _take_turn(self, deadline: float) -> bool:
        with self._lock:
            if self.stop.is_set() or time.monotonic() > deadline:
                return False
            if self._made >= self.max_requests:
                return False
            self._made += 1
            return True

    def _once(self, connection: _Connection) -> tuple[int, str]:
        connection.request("GET", self.path)
        response = connection.getresponse()
        body = response.read().decode().strip()
        if self.keep_alive and response.will_close:
            with self._lock:
                self.told_to_close += 1
        return response.status, body

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        connection = _Connection(self.port, self.opened)
        try:
            while self._take_turn(deadline):
                if not self.keep_alive:
                    connection.close()
                    connection = _Connection(self.port, self.opened)
                try:
                    status, body = self._once(connection)
                except (OSError, http.client.HTTPException) as exc:
                    with self._lock:
                        self.first_failures.append(repr(exc))
                    connection.close()
                    if not self.keep_alive:
                        with self._lock:
                            self.failures.append(repr(exc))
                        continue
                    connection = _Connection(self.port, self.opened)
                    try:
                        status, body = self._once(connection)  # the one retry
                    except (OSError, http.client.HTTPException) as again:
                        connection.close()
                        with self._lock:
                            self.failures.append(f"{exc!r}, then {again!r}")
                        continue
                with self._lock:
                    if status == 200:
                        self.bodies[body] += 1
                        self.timeline.append((time.time(), body))
                    else:
                        self.failures.append(f"HTTP {status}: {body[:80]}")
        finally:
            connection.close()

    def wait_for_answers(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` more requests finished than now (bounded by ``timeout``)."""
        target = self.answered + count
        deadline = time.monotonic() + timeout
        while self.answered < target:
            alive = any(t.is_alive() for t in self._threads)
            assert alive and time.monotonic() < deadline, "the clients stalled"
            time.sleep(0.01)

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
