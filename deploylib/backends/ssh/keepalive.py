"""Dead links found in bounded time: paramiko's own keepalive asks for no reply, so it never
notices a silent peer. ``AliveMonitor`` sends keepalives that expect one, and closes the
transport when none came for ``alive_interval * alive_count_max`` seconds; closing it wakes
every paramiko wait on it.

One watchdog thread looks after every connection of the process (a thread per connection woke
four times a second each: 160 wake-ups a second at 40 hosts). A connection's keepalives start
one interval after its handshake, on a thread of their own (the request waits for its answer):
a deploy shorter than that starts none. The watchdog's limit counts from the handshake."""

from __future__ import annotations

import threading
import time

import paramiko

#: the longest the watchdog sleeps between two looks
TICK = 0.25


class AliveMonitor:
    """Keepalives that expect a reply, and the watchdog's limit for one connection."""

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int) -> None:
        self.transport = transport
        self.interval = interval
        self.limit = interval * count_max
        self.started = time.monotonic()
        self.last_reply = self.started
        self.dead = False
        self.pinging = False
        self._stop = threading.Event()
        WATCHDOG.add(self)

    def _ping(self) -> None:
        while not self._stop.is_set() and self.transport.is_active():
            # returns when the server answers (OpenSSH answers "failure": any answer will do)
            # or when the watchdog closes the transport
            self.transport.global_request("keepalive@openssh.com", wait=True)
            if not self.transport.is_active():
                return
            self.last_reply = time.monotonic()
            # halfway to the limit at most: with alive_count_max = 1 an answer an instant late
            # would otherwise find the link already judged dead
            self._stop.wait(min(self.interval, self.limit / 2))

    def look(self, now: float) -> bool:
        """The watchdog's look: start the keepalives when due, close a silent connection.
        False once there is nothing more to watch."""
        if self._stop.is_set():
            return False
        # the first keepalive goes one interval in, or halfway to the limit when that is
        # sooner (alive_count_max = 1): its answer always has time to come
        if not self.pinging and now - self.started >= min(self.interval, self.limit / 2):
            pinger = threading.Thread(target=self._ping, daemon=True, name="deploylib-keepalive")
            try:
                pinger.start()
                self.pinging = True
            except RuntimeError:  # no thread to be had now: tried again at the next look
                pass
        if now - self.last_reply > self.limit:
            self.dead = True
            try:
                # closing joins paramiko's thread: not on the watchdog's, which watches others
                threading.Thread(target=self.transport.close, daemon=True).start()
            except RuntimeError:  # no thread to be had: closed here, late rather than never
                self.transport.close()
            return False
        return True

    def stop(self) -> None:
        self._stop.set()
        WATCHDOG.remove(self)


class _Watchdog:
    """The thread that looks at every monitor in turn; it runs while there are monitors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._monitors: set[AliveMonitor] = set()
        #: the watchdog thread running now, if any: only it may say it ended
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, monitor: AliveMonitor) -> None:
        with self._lock:
            self._monitors.add(monitor)
            if self._thread is not None:
                self._wake.set()  # its interval may be shorter than the tick in use
                return
            thread = threading.Thread(target=self._watch, daemon=True, name="deploylib-watchdog")
            self._thread = thread
        try:
            thread.start()
        except BaseException:
            # no watchdog came: the next monitor added tries again, and this one is not
            # watched by a thread that does not exist (its connection fails to open instead)
            with self._lock:
                self._monitors.discard(monitor)
                if self._thread is thread:
                    self._thread = None
            raise

    def remove(self, monitor: AliveMonitor) -> None:
        with self._lock:
            self._monitors.discard(monitor)

    def _watch(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._lock:
                    monitors = list(self._monitors)
                    if not monitors:
                        if self._thread is me:
                            self._thread = None
                        return
                now = time.monotonic()
                for monitor in monitors:
                    try:
                        watched = monitor.look(now)
                    except Exception:  # one connection's trouble must not end the others' watch
                        watched = True
                    if not watched:
                        self.remove(monitor)
                tick = min([TICK, *(m.interval / 4 for m in monitors)])
                self._wake.wait(tick)
                self._wake.clear()
        finally:
            with self._lock:
                if self._thread is me:  # ended by a bug: the next monitor added starts another
                    self._thread = None


WATCHDOG = _Watchdog()
