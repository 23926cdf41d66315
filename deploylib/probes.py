"""HTTP and TCP probes made from the controller, for the ``http`` and ``tcp`` checks."""

from __future__ import annotations

import http.client
import socket
import urllib.parse

from deploylib.commands import Probe, Result


def perform_probe(probe: Probe) -> Result:
    if probe.kind == "tcp":
        try:
            with socket.create_connection((probe.host, probe.port), timeout=probe.timeout):
                return Result(0, f"connected to {probe.host}:{probe.port}")
        except OSError as exc:
            return Result(1, stderr=f"tcp {probe.host}:{probe.port}: {exc}")
    return _http_get(probe)


def _http_get(probe: Probe) -> Result:
    parts = urllib.parse.urlsplit(probe.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Result(1, stderr=f"not an http(s) URL: {probe.url}")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname, parts.port, timeout=probe.timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read(1 << 20).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return Result(1, stderr=f"GET {probe.url}: {exc.__class__.__name__}: {exc}")
    finally:
        connection.close()
    if probe.status is not None and response.status != probe.status:
        return Result(
            1, body, f"GET {probe.url}: status {response.status}, expected {probe.status}"
        )
    if probe.contains is not None and probe.contains not in body:
        return Result(
            1, body, f"GET {probe.url}: status {response.status}, body lacks {probe.contains!r}"
        )
    return Result(0, body)
