"""``pushgateway``: the metrics pushed to a Prometheus Pushgateway, kept across runs there.

The group is ``job="deploylib"``, ``app`` and ``env``. A controller need keep nothing (a CI
runner keeps nothing): each run reads the group's current values back from the gateway
(``GET /api/v1/metrics``), adds itself and replaces the group (``PUT``). Both requests are
``probes.exchange`` calls inside one ``probes.within``: one deadline over the two, whatever the
gateway does (refuses, answers a byte at a time, never answers). An answer that does not read
stops before the ``PUT``: counts are never overwritten with a guess. Nothing here fails a
deploy: each problem is a warning, returned as a line naming the gateway without the user and
password a URL may hold (``https://user:pass@...`` is sent as HTTP basic authentication).

Two runs of one app and environment that read before either writes would lose one count: the
Pushgateway has no compare-and-swap. The deploy lock keeps deploys of one environment apart,
so only a run that found the lock held (``locked``) can race with the deploy that held it.
"""

from __future__ import annotations

import base64
import http.client
import urllib.parse

from deploylib.metrics import gateway_api, series
from deploylib.metrics.series import RunRecord
from deploylib.probes import DeadlineExceeded, SocketWatch, exchange, within

#: seconds for the read and the push together
TIMEOUT = 5.0
#: how much of ``/api/v1/metrics`` is read: it holds every group of the gateway
API_LIMIT = 32 << 20
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayError(Exception):
    """The gateway answered, but not as it should."""


def shown(url: str) -> str:
    """``url`` without the user and password it may hold."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def push(url: str, record: RunRecord, *, timeout: float = TIMEOUT) -> list[str]:
    """Count ``record`` in its group on the Pushgateway at ``url``; return the warnings."""
    base = url.rstrip("/")
    headers = _auth(base)
    where = f"pushgateway {shown(url)}"
    warnings: list[str] = []

    def read_add_put(watch: SocketWatch) -> None:
        reply = exchange(
            "GET",
            base + gateway_api.API_PATH,
            watch,
            timeout,
            headers={**headers, "Accept": "application/json"},
            limit=API_LIMIT,
        )
        if reply.status != 200:
            raise GatewayError(f"GET {gateway_api.API_PATH}: status {reply.status}")
        if not reply.complete:
            raise GatewayError(f"GET {gateway_api.API_PATH}: more than {API_LIMIT} bytes")
        try:
            samples = gateway_api.group_samples(reply.body, record.app, record.env)
        except ValueError as exc:
            raise GatewayError(f"GET {gateway_api.API_PATH}: {exc}") from None
        totals, problems = series.from_samples(samples)
        warnings.extend(f"{where}: {problem}" for problem in problems)
        data = series.render(series.add(totals.only(record.app, record.env), record))
        path = gateway_api.group_path(record.app, record.env)
        reply = exchange(
            "PUT",
            base + path,
            watch,
            timeout,
            data=data,
            headers={**headers, "Content-Type": CONTENT_TYPE},
        )
        if not 200 <= reply.status < 300:
            said = " ".join(reply.body[:200].split())
            raise GatewayError(f"PUT: status {reply.status}" + (f": {said}" if said else ""))

    try:
        within(timeout, read_add_put)
    except DeadlineExceeded as exc:
        return [*warnings, f"{where}: not pushed: {exc}"]
    except GatewayError as exc:
        return [*warnings, f"{where}: not pushed: {exc}"]
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return [*warnings, f"{where}: not pushed: {exc.__class__.__name__}: {exc}"]
    return warnings


def _auth(url: str) -> dict[str, str]:
    """HTTP basic authentication from the URL's user and password, if it has them."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
