"""Dead links found in bounded time: paramiko's own keepalive asks for no reply, so it never
notices a silent peer. ``AliveMonitor`` sends keepalives that expect one, and closes the
transport when none came for ``alive_interval * alive_count_max`` seconds; closing it wakes
every paramiko wait on it."""

from __future__ import annotations

import threading
import time

import paramiko


class AliveMonitor:
    """Keepalives that expect a reply, and a watchdog that closes a silent connection."""

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int) -> None:
        self.transport = transport
        self.interval = interval
        self.limit = interval * count_max
        self.last_reply = time.monotonic()
        self.dead = False
        self._stop = threading.Event()
        for target in (self._ping, self._watch):
            threading.Thread(target=target, daemon=True, name="deploylib-keepalive").start()

    def _ping(self) -> None:
        # the handshake just had its answer: the first keepalive goes one interval later (a
        # deploy shorter than that sends none; the watchdog's limit counts from now either way)
        self._stop.wait(self.interval)
        while not self._stop.is_set() and self.transport.is_active():
            # returns when the server answers (OpenSSH answers "failure": any answer will do)
            # or when the watchdog closes the transport
            self.transport.global_request("keepalive@openssh.com", wait=True)
            if not self.transport.is_active():
                return
            self.last_reply = time.monotonic()
            self._stop.wait(self.interval)

    def _watch(self) -> None:
        while not self._stop.wait(min(0.25, self.interval / 4)):
            if time.monotonic() - self.last_reply > self.limit:
                self.dead = True
                self.transport.close()
                return

    def stop(self) -> None:
        self._stop.set()
