"""HTTP and TCP requests made from the controller, each bounded in total by one deadline.

A socket timeout bounds one read: a server that trickles a byte every few seconds never trips
it, and a health check or webhook against it would run for as long as the server likes. Here
every request runs in a worker thread that the caller waits for, up to the request's deadline.
At the deadline (or when Ctrl-C reaches the waiting caller) the caller shuts the worker's socket
down, which ends a blocked connect, send or read at once, and returns. Name resolution,
connect, TLS, sending, the status line, the headers and the body are all inside that one
deadline. (A TLS handshake still in progress at the deadline cannot be cut that way: the caller
returns at the deadline all the same, and the worker ends with its socket's timeout.)

``perform_probe`` runs the ``http``, ``tcp`` and ``prometheus`` checks (the last judged by
``prometheus_api``); ``post_json`` is the webhook's POST; ``exchange`` is one request of any
method, for callers that run several inside one ``within`` (the Pushgateway's read and push).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import socket
import stat
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from deploylib import prometheus_api
from deploylib.commands import Probe, Result

T = TypeVar("T")

#: how much of a response body is read (and kept for error messages)
BODY_LIMIT = 1 << 20


class DeadlineExceeded(TimeoutError):
    """A request did not complete within its deadline (its socket was shut down)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


class SocketWatch:
    """The sockets a worker connected, so that another thread can shut them down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._shut = False

    def track(self, sock: socket.socket) -> None:
        """Watch ``sock``; if the watch was already shut, shut ``sock`` too and raise."""
        with self._lock:
            if not self._shut:
                self._sockets.append(sock)
                return
        _shutdown(sock)
        raise ConnectionAbortedError("the request was abandoned (deadline or interrupt)")

    def shut(self) -> None:
        """Shut down every watched socket (and any tracked later): blocked calls return."""
        with self._lock:
            self._shut = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def within(seconds: float, work: Callable[[SocketWatch], T]) -> T:
    """What ``work(watch)`` returns (or raises), run in a worker thread, within ``seconds``.

    Raises ``DeadlineExceeded`` once ``seconds`` have passed: the sockets ``work`` handed to
    ``watch`` are shut down and the worker is left to finish on its own (a daemon thread). A
    ``KeyboardInterrupt`` in the waiting caller shuts them down too, and is re-raised.
    """
    watch = SocketWatch()
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work(watch)))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="deploylib-request").start()
    try:
        finished = done.wait(max(seconds, 0.0))
    except BaseException:
        watch.shut()
        raise
    if not finished:
        watch.shut()
        raise DeadlineExceeded(seconds)
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


class WatchedHTTPConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` that hands its socket to a ``SocketWatch`` once connected."""

    def __init__(self, *args: Any, watch: SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.track(self.sock)


class WatchedHTTPSConnection(http.client.HTTPSConnection):
    """An ``HTTPSConnection`` that hands its socket to a ``SocketWatch`` once connected."""

    def __init__(self, *args: Any, watch: SocketWatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.track(self.sock)


# ---------------------------------------------------------------------------- probes


def perform_probe(probe: Probe) -> Result:
    """Run an ``http``, ``tcp`` or ``prometheus`` check; ``probe.timeout`` bounds all of it.
    A ``file`` check is a ``stat`` of a file on this machine, made at once."""
    if probe.kind == "file":
        return _file_check(probe)
    what = {"tcp": _tcp_connect, "prometheus": _prometheus_query}.get(probe.kind, _http_get)
    try:
        return within(probe.timeout, functools.partial(what, probe))
    except DeadlineExceeded as exc:
        return Result(1, stderr=f"{probe.line}: {exc}", timed_out=True)


def _file_check(probe: Probe) -> Result:
    try:
        info = os.stat(probe.path)
    except OSError as exc:
        return Result(1, stderr=f"{probe.path}: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return Result(1, stderr=f"{probe.path}: not a file with something in it")
    return Result(0)


def _tcp_connect(probe: Probe, watch: SocketWatch) -> Result:
    try:
        with socket.create_connection((probe.host, probe.port), timeout=probe.timeout) as sock:
            watch.track(sock)
            return Result(0, f"connected to {probe.host}:{probe.port}")
    except OSError as exc:
        return Result(1, stderr=f"tcp {probe.host}:{probe.port}: {exc}")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: its status and (up to the read limit of) its body."""

    status: int
    body: str
    #: false when the body was longer than the read limit (and cut there)
    complete: bool = True


def exchange(
    method: str,
    url: str,
    watch: SocketWatch,
    timeout: float,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    limit: int = BODY_LIMIT,
) -> Reply:
    """One request to ``url`` on a connection of its own, its socket handed to ``watch``: the
    reply, with up to ``limit`` bytes of its body. Run it inside ``within`` (the deadline);
    raises ``ValueError`` for a URL that is not http(s), ``OSError`` or
    ``http.client.HTTPException`` when there is no answer."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    connection_class = WatchedHTTPSConnection if parts.scheme == "https" else WatchedHTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout, watch=watch)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request(
            method, path, body=data, headers={"Connection": "close", **(headers or {})}
        )
        response = connection.getresponse()
        body = response.read(limit + 1)
    finally:
        connection.close()
    text = body[:limit].decode("utf-8", "replace")
    return Reply(response.status, text, complete=len(body) <= limit)


def _get(
    url: str, watch: SocketWatch, timeout: float, *, headers: Mapping[str, str] | None = None
) -> Reply | str:
    """GET ``url``: the reply (up to ``BODY_LIMIT`` bytes of its body), or why there is none
    (which the caller words: the URL is its own)."""
    try:
        return exchange("GET", url, watch, timeout, headers=headers)
    except ValueError as exc:
        return str(exc)
    except (OSError, http.client.HTTPException) as exc:
        return f"{exc.__class__.__name__}: {exc}"


def _http_get(probe: Probe, watch: SocketWatch) -> Result:
    reply = _get(probe.url, watch, probe.timeout)
    if isinstance(reply, str):
        return Result(1, stderr=f"GET {probe.url}: {reply}")
    return _judge(probe, reply)


def _prometheus_query(probe: Probe, watch: SocketWatch) -> Result:
    """An instant query of the Prometheus server at ``probe.url``, judged by ``prometheus_api``."""
    url = prometheus_api.query_url(probe.url, probe.query)
    reply = _get(url, watch, probe.timeout, headers={"Accept": "application/json"})
    if isinstance(reply, str):
        where = f"prometheus {probe.url} {prometheus_api.shown_query(probe.query)}"
        return Result(1, stderr=f"{where}: {reply}")
    cut_at = None if reply.complete else BODY_LIMIT
    return prometheus_api.judge(probe, reply.status, reply.body, cut_at=cut_at)


def _judge(probe: Probe, reply: Reply) -> Result:
    if probe.status is not None and reply.status != probe.status:
        why = f"status {reply.status}, expected {probe.status}"
    elif probe.contains is not None and probe.contains not in reply.body:
        why = f"status {reply.status}, body lacks {probe.contains!r}"
    else:
        return Result(0, reply.body)
    shown = _body_start(probe.redact(reply.body))
    return Result(1, reply.body, f"GET {probe.url}: {why}{shown}")


#: how much of a failing response's body its message shows
BODY_SHOWN = 200


def _body_start(body: str) -> str:
    """The first ``BODY_SHOWN`` bytes of a body, on one line (what the app said went wrong);
    its secrets are masked before (see ``Probe.redact``)."""
    start = body.encode()[:BODY_SHOWN].decode("utf-8", "ignore")
    text = " ".join(start.split())
    if not text:
        return ""
    return f"; body: {text}" + (" …" if len(body.encode()) > BODY_SHOWN else "")


# ---------------------------------------------------------------------------- webhook POST


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: SocketWatch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(WatchedHTTPConnection, watch=self._watch), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: SocketWatch) -> None:
        super().__init__()
        self._watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(WatchedHTTPSConnection, watch=self._watch), req)


def post_json(url: str, document: Mapping[str, Any], *, timeout: float) -> int:
    """POST ``document`` as JSON to ``url``; return the HTTP status.

    ``timeout`` bounds the whole exchange: connect, sending, the answer's headers and (up to
    1 KiB of) its body; past it ``DeadlineExceeded`` is raised. Proxies from the environment
    (``https_proxy`` ...) are used as urllib uses them. Raises ``OSError`` (``HTTPError`` for a
    status of 400 or more) or ``ValueError`` for a bad URL; ``KeyboardInterrupt`` ends the
    request at once and is re-raised.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(document, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "deploylib"},
        method="POST",
    )

    def send(watch: SocketWatch) -> int:
        opener = urllib.request.build_opener(
            _WatchedHTTPHandler(watch), _WatchedHTTPSHandler(watch)
        )
        with opener.open(request, timeout=timeout) as response:
            response.read(1024)
            status: int = response.status
            return status

    return within(timeout, send)


__all__ = [
    "DeadlineExceeded",
    "Reply",
    "SocketWatch",
    "exchange",
    "perform_probe",
    "post_json",
    "within",
]
