"""Prometheus's HTTP API for the ``prometheus`` check: the URL of an instant query, and its
answer judged against the check's bounds. Pure: ``probes`` makes the request.

An answer (``GET {url}/api/v1/query?query=...``) is JSON::

    {"status": "success", "data": {"resultType": "vector",
      "result": [{"metric": {"__name__": "up", "job": "api"}, "value": [1712.5, "1"]}]}}
    {"status": "success", "data": {"resultType": "scalar", "result": [1712.5, "0.25"]}}
    {"status": "error", "errorType": "bad_data", "error": "parse error at char 5: ..."}

Every sample of a vector (or the one of a scalar) must lie within the bounds; ``NaN`` never
does. An empty vector is "no data": a failure unless ``on_no_data`` is ``"pass"``. A range
vector (matrix), a string, a histogram sample, an error, a status other than 200 or an answer
that is not the API's fail with a message saying which.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deploylib.commands import Probe, Result, number, one_line

#: the API path of an instant query, under the server's base URL
QUERY_PATH = "/api/v1/query"
#: how much of a label set and of an unexpected body a message shows (a query is shown whole:
#: a failure's summary keeps its end, where the value and the bound are)
LABELS_SHOWN = 160
BODY_SHOWN = 200


def query_url(base: str, query: str) -> str:
    """The URL of ``query`` as an instant query of the server at ``base``: its path with
    ``/api/v1/query`` added, and ``query=`` the query percent-encoded (every byte but
    letters, digits and ``_.-~``), after any query string ``base`` has of its own."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + QUERY_PATH
    encoded = "query=" + urllib.parse.quote(query, safe="")
    query_string = f"{parts.query}&{encoded}" if parts.query else encoded
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query_string, ""))


@dataclass(frozen=True)
class Sample:
    """One number of the answer and the series it belongs to (``None``: a scalar)."""

    value: float
    labels: Mapping[str, object] | None

    def describe(self, redact: Callable[[str], str] = str) -> str:
        return f"{describe_labels(self.labels, redact)} = {number(self.value)}"


class NotAnAnswer(ValueError):
    """The body is not an answer of the query API (``foreign``: its start is worth showing),
    or not one holding numbers."""

    def __init__(self, message: str, *, foreign: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign


def judge(probe: Probe, status: int, body: str, *, cut_at: int | None = None) -> Result:
    """The check's result from the server's answer: HTTP ``status`` and ``body`` (``cut_at``:
    the body was longer than that many bytes, and cut there)."""
    where = f"prometheus {probe.url} {shown_query(probe.query)}"
    if cut_at is not None:
        return _failed(
            f"{where}: the answer is over the {cut_at} bytes read; aggregate the query "
            "(sum by (...), topk(...)) so that it returns fewer series"
        )
    document = _parse(body)
    if isinstance(document, dict) and document.get("status") == "error":
        http = f"HTTP {status}, " if status != 200 else ""
        kind = document.get("errorType") or "error"
        error = _text(probe.redact(str(document.get("error"))), BODY_SHOWN)
        return _failed(f"{where}: {http}{kind}: {error}")
    if status != 200:
        return _failed(f"{where}: HTTP {status}, expected 200{_body_start(probe.redact(body))}")
    try:
        samples = samples_of(document, probe.redact)
    except NotAnAnswer as exc:
        shown = _body_start(probe.redact(body)) if exc.foreign else ""
        return _failed(f"{where}: {exc}{shown}")
    if not samples:
        if probe.on_no_data == "pass":
            return Result(0, f"{where}: no data (an empty result), which passes (on_no_data)")
        return _failed(
            f'{where}: no data (an empty result); on_no_data="pass" if no series is fine'
        )
    outside = [(s, why) for s in samples if (why := _outside(probe, s.value))]
    if not outside:
        return Result(0, f"{where}: {_count(len(samples))} {probe.bounds}")
    sample, why = outside[0]
    others = len(outside) - 1
    more = f" (and {others} more sample{'s' if others > 1 else ''} out of bounds)" if others else ""
    return _failed(f"{where}: {sample.describe(probe.redact)}, {why}{more}")


def samples_of(document: object, redact: Callable[[str], str] = str) -> list[Sample]:
    """The numbers of a successful instant query's answer; ``NotAnAnswer`` if it holds none
    (its message masked by ``redact``)."""
    if not isinstance(document, dict) or document.get("status") != "success":
        raise NotAnAnswer("not an answer of Prometheus's query API", foreign=True)
    data = document.get("data")
    if not isinstance(data, dict):
        raise NotAnAnswer("not an answer of Prometheus's query API (no data)", foreign=True)
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Sample(_value(result), None)]
    if kind == "matrix":
        raise NotAnAnswer(
            "the query returns a range vector (matrix): check an instant vector, "
            "e.g. rate(x[5m]) rather than x[5m]"
        )
    if kind == "string":
        raise NotAnAnswer("the query returns a string, not a number")
    if kind != "vector" or not isinstance(result, list):
        raise NotAnAnswer(
            f"not an answer of Prometheus's query API (resultType {kind!r})", foreign=True
        )
    samples = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
            raise NotAnAnswer(
                "not an answer of Prometheus's query API (a bad sample)", foreign=True
            )
        labels: Mapping[str, object] = item.get("metric", {})
        if "value" not in item and "histogram" in item:
            raise NotAnAnswer(
                f"{describe_labels(labels, redact)} is a histogram, not a number: check a number "
                "made of it (histogram_quantile, histogram_count, ...)"
            )
        samples.append(Sample(_value(item.get("value")), labels))
    return samples


def _value(pair: object) -> float:
    """The number of a ``[timestamp, "value"]`` pair (``"NaN"`` and ``"+Inf"`` included)."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise NotAnAnswer("not an answer of Prometheus's query API (a bad value)", foreign=True)
    try:
        return float(pair[1])
    except ValueError:
        raise NotAnAnswer(f"a sample's value {pair[1][:40]!r} is not a number") from None


def _outside(probe: Probe, value: float) -> str:
    """Why ``value`` is out of the probe's bounds; empty when it is within them."""
    if math.isnan(value):
        return f"not a number, so not {probe.bounds}"
    if probe.maximum is not None and value > probe.maximum:
        return f"above max {number(probe.maximum)}"
    if probe.minimum is not None and value < probe.minimum:
        return f"below min {number(probe.minimum)}"
    return ""


def describe_labels(labels: Mapping[str, object] | None, redact: Callable[[str], str] = str) -> str:
    """A series as Prometheus writes it: ``name{label="value", ...}``; ``{}`` for a series with
    no labels, ``scalar`` for a scalar. Cut at ``LABELS_SHOWN`` characters, after ``redact``
    masked the secrets in it (a secret cut first would no longer be found)."""
    if labels is None:
        return "scalar"
    name = labels.get("__name__")
    pairs = ", ".join(
        f"{key}={json.dumps(str(value), ensure_ascii=False)}"
        for key, value in labels.items()
        if key != "__name__"
    )
    text = f"{name if isinstance(name, str) else ''}{{{pairs}}}"
    return _cut(redact(text), LABELS_SHOWN)


def shown_query(query: str) -> str:
    """A query as messages show it: whole, on one line."""
    return one_line(query)


def _parse(body: str) -> object:
    try:
        document: object = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document


def _count(n: int) -> str:
    return f"{n} sample" + ("" if n == 1 else "s")


def _text(value: object, limit: int) -> str:
    return _cut(one_line(str(value)), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _body_start(body: str) -> str:
    text = _text(body, BODY_SHOWN)
    return f"; body: {text}" if text else ""


def _failed(message: str) -> Result:
    return Result(1, stderr=message)


__all__ = [
    "QUERY_PATH",
    "NotAnAnswer",
    "Sample",
    "describe_labels",
    "judge",
    "query_url",
    "samples_of",
    "shown_query",
]
