"""The Prometheus Pushgateway's HTTP API, as far as deploylib uses it (pure): the path of an
app's and environment's group, and that group's samples read from ``GET /api/v1/metrics``.

A group is ``job="deploylib"`` plus ``app`` and ``env``. Its path carries every label value
base64url-encoded (``app@base64/...``), which the Pushgateway decodes: any value, also one with
a ``/`` or one that is ``.``, reaches it as written.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from deploylib.metrics.series import Sample

JOB = "deploylib"
API_PATH = "/api/v1/metrics"
#: what the gateway keeps in every group of its own accord
GATEWAY_OWN = frozenset({"labels", "push_time_seconds", "push_failure_time_seconds"})


def group_path(app: str, env: str) -> str:
    """``/metrics/job/deploylib/app@base64/<app>/env@base64/<env>``."""
    parts = [("job", JOB), ("app", app), ("env", env)]
    return "/metrics" + "".join(f"/{name}@base64/{_b64(value)}" for name, value in parts)


def _b64(value: str) -> str:
    # an empty value is "=" (the Pushgateway's rule: its base64 path segment may not be empty)
    return base64.urlsafe_b64encode(value.encode()).decode() or "="


def group_samples(body: str, app: str, env: str) -> list[Sample]:
    """The samples of the group of ``app`` and ``env`` in the answer of ``GET /api/v1/metrics``
    (none when there is no such group yet); ``ValueError`` when ``body`` is not such an answer.
    The ``job`` and ``instance`` labels the Pushgateway adds are left out."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise ValueError(f"not JSON: {_start(body)}") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise ValueError(f"not a successful API answer: {_start(body)}")
    groups = answer.get("data")
    if not isinstance(groups, list):
        raise ValueError("its data is not a list of groups")
    wanted = {"job": JOB, "app": app, "env": env}
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("labels"), dict):
            raise ValueError("a group without labels")
        if group["labels"] == wanted:
            return list(_samples(group))
    return []


def _samples(group: dict[str, Any]) -> list[Sample]:
    samples: list[Sample] = []
    for name, family in group.items():
        if name in GATEWAY_OWN or not isinstance(family, dict):
            continue  # labels, last_push_successful
        kind = family.get("type")
        metrics = family.get("metrics")
        if not isinstance(metrics, list):
            raise ValueError(f"{name}: its metrics are not a list")
        for metric in metrics:
            if not isinstance(metric, dict) or not isinstance(metric.get("labels"), dict):
                raise ValueError(f"{name}: a metric without labels")
            labels = {
                str(k): str(v) for k, v in metric["labels"].items() if k not in ("job", "instance")
            }
            if kind == "HISTOGRAM":
                buckets = metric.get("buckets")
                if not isinstance(buckets, dict):
                    raise ValueError(f"{name}: a histogram without buckets")
                for bound, count in buckets.items():
                    samples.append(
                        Sample(f"{name}_bucket", {**labels, "le": str(bound)}, _number(count))
                    )
                samples.append(
                    Sample(f"{name}_bucket", {**labels, "le": "+Inf"}, _number(metric.get("count")))
                )
                samples.append(Sample(f"{name}_sum", labels, _number(metric.get("sum"))))
            elif kind in ("COUNTER", "GAUGE", "UNTYPED"):
                samples.append(Sample(name, labels, _number(metric.get("value"))))
            else:
                raise ValueError(f"{name}: a metric of type {kind!r}")
    return samples


def _number(value: object) -> float:
    """A value as the API writes it (a string: ``"2"``, ``"1.5e+09"``, ``"+Inf"``)."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None


def _start(body: str) -> str:
    text = " ".join(body[:120].split())
    return repr(text + ("…" if len(body) > 120 else ""))
