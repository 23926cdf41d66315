"""Servers on 127.0.0.1 that answer slowly or never, for deadline tests.

``SlowHTTPServer(trickle="headers" | "body" | "none", interval=N)`` answers every request
(GET or POST) with a 200 whose status line and headers (``"headers"``) or body (``"body"``)
arrive one byte every ``interval`` seconds; ``"none"`` answers at once. A socket timeout
longer than ``interval`` never fires against it: only a deadline on the whole exchange does.
``SilentListener`` accepts TCP connections and never sends a byte (an SSH server that never
sends its banner). ``FullBacklog`` is a port whose accept queue is full: a connect to it is
neither accepted nor refused, it hangs.

Each is a context manager, runs in threads of the test process and is stopped by the test:
``stop()`` closes every socket and joins every thread (bounded).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

ANSWER = b"ok " * 400  # trickled a byte at a time, this outlasts any test


class _Server:
    """A listening socket on 127.0.0.1 and a thread per accepted connection."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="slow-accept")

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve_and_close, args=(connection,), daemon=True, name="slow-conn"
            )
            with self._lock:
                self._connections.append(connection)
                self._threads.append(thread)
            thread.start()

    def _serve_and_close(self, connection: socket.socket) -> None:
        try:
            self.serve(connection)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    def serve(self, connection: socket.socket) -> None:
        self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in [self._acceptor, *threads]:
            if thread.ident is not None:
                thread.join(timeout=5)


class SilentListener(_Server):
    """Accepts connections, reads nothing, sends nothing, until stopped."""


class SlowHTTPServer(_Server):
    """Answers every request with a 200, trickling headers or body ``interval`` s per byte."""

    def __init__(self, trickle: str = "body", interval: float = 1.0) -> None:
        if trickle not in ("headers", "body", "none"):
            raise ValueError(f"trickle is headers, body or none, not {trickle!r}")
        super().__init__()
        self.trickle = trickle
        self.interval = interval
        #: every request received: its head and body
        self.requests: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def serve(self, connection: socket.socket) -> None:
        self.requests.append(_read_request(connection))
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(ANSWER)}\r\n".encode()
            + b"X-Padding: "
            + b"p" * 200
            + b"\r\nConnection: close\r\n\r\n"
        )
        if self.trickle == "headers":
            self._dribble(connection, head)
        else:
            connection.sendall(head)
        if self.trickle == "body":
            self._dribble(connection, ANSWER)
        else:
            connection.sendall(ANSWER)

    def _dribble(self, connection: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            connection.sendall(data[index : index + 1])
            if self.stopping.wait(self.interval):
                return


def _read_request(connection: socket.socket) -> bytes:
    """The request's head and its body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class FullBacklog:
    """A port on 127.0.0.1 whose accept queue is full: a new connect hangs (SYNs are dropped).

    Linux keeps up to backlog + 1 connections waiting for ``accept``; past that it drops SYNs,
    so a client's connect is neither accepted nor refused until its own timeout.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []

    def __enter__(self) -> FullBacklog:
        for _ in range(8):  # bounded: the queue is full after a couple
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.5)
            self._fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", self.port))
            except TimeoutError:
                return self
        raise RuntimeError("the accept queue never filled up")

    def __exit__(self, *exc: object) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()
