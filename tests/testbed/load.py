"""A bounded request loop and a GET on loopback, for the tests that count failed requests
while a deploy replaces the server."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settles_on(read: Callable[[], str], expected: str, within: float = 10.0) -> bool:
    """Whether ``read()`` gives ``expected`` within ``within`` seconds. nginx applies a reload
    asynchronously (``nginx -s reload`` returns once the master has the signal; its old
    workers take new connections until the new ones run), so right after a proxy switch a
    request may still reach the slot that was live a moment before."""
    end = time.monotonic() + within
    while True:
        seen = read()
        if seen == expected:
            return True
        if time.monotonic() > end:
            print(f"still {seen!r} after {within:g} s, not {expected!r}")
            return False
        time.sleep(0.05)


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200
        return body
    finally:
        connection.close()


class Load:
    """A bounded request loop on loopback: a fresh connection per request, like most clients."""

    def __init__(self, port: int, max_requests: int = 100_000, max_seconds: float = 60) -> None:
        self.port = port
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.bodies: Counter[str] = Counter()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                self.bodies[get(self.port, "/").strip()] += 1
            except (OSError, AssertionError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))

    def wait_for_answers(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` more requests were answered (or failed) than now."""
        target = sum(self.bodies.values()) + len(self.failures) + count
        deadline = time.monotonic() + timeout
        while sum(self.bodies.values()) + len(self.failures) < target:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the load stalled"
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
