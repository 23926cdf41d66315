"""deploylib's metrics as values (pure): what one run adds (``RunRecord``), the totals kept
across runs (``Totals``), the totals read back from samples (a textfile's, a Pushgateway
group's) and written out in Prometheus's text format through prometheus-client.

The series, each labelled ``app`` and ``env`` (values from deploy.toml and the run only: label
values never hold a secret):

* ``deploylib_deploys_total{outcome}`` and ``deploylib_rollbacks_total{outcome}``: counters,
  the outcome one of ``OUTCOMES``;
* ``deploylib_deploy_duration_seconds``: a histogram of how long deploys took, whatever their
  outcome, but for those locked out (they never ran);
* ``deploylib_release_info{release,revision}``: 1 for the one release the environment runs;
* ``deploylib_last_success_timestamp_seconds``: when the last successful deploy ended.

prometheus-client's own metric objects count within one process; these totals outlive it, so
they are plain data, read back and added to, and handed to prometheus-client as a collector:
no ``_created`` series (they would restart with every process) and no global registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

DEPLOYS = "deploylib_deploys"
ROLLBACKS = "deploylib_rollbacks"
DURATION = "deploylib_deploy_duration_seconds"
RELEASE_INFO = "deploylib_release_info"
LAST_SUCCESS = "deploylib_last_success_timestamp_seconds"

#: the outcomes a run counts as, worded as the release log words them (``split``: exit 4,
#: ``locked``: exit 3); a deploy that failed after a switch and was put back is
#: ``rolled_back``, one that failed before any host switched ``failed``
OUTCOMES = ("success", "failed", "rolled_back", "split", "locked")
#: the upper bounds of the duration histogram's buckets, in seconds (and +Inf)
BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

Kind = Literal["deploy", "rollback"]
#: an app and an environment
Key = tuple[str, str]


@dataclass(frozen=True)
class LiveRelease:
    """The release an environment runs, and its revision."""

    release: str
    revision: str


#: a run that left the environment on several releases: no ``release_info`` series for it
NO_SINGLE_RELEASE = LiveRelease("", "")


@dataclass(frozen=True)
class RunRecord:
    """One deploy or rollback, as the metrics count it."""

    app: str
    env: str
    kind: Kind
    outcome: str
    #: how long the run took
    seconds: float
    #: when it ended (Unix time)
    finished_at: float
    #: the release the environment runs after it; ``None``: as before (nothing is known to
    #: have changed), ``NO_SINGLE_RELEASE``: its hosts run different releases
    live: LiveRelease | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"not an outcome: {self.outcome!r} (one of {', '.join(OUTCOMES)})")


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per bound of ``BUCKETS`` (the last: +Inf, the count) and the sum."""

    counts: tuple[float, ...] = (0.0,) * (len(BUCKETS) + 1)
    total: float = 0.0

    @property
    def count(self) -> float:
        return self.counts[-1]

    def observe(self, value: float) -> Histogram:
        bounds = (*BUCKETS, math.inf)
        counts = tuple(n + (value <= bound) for n, bound in zip(self.counts, bounds, strict=True))
        return Histogram(counts, round(self.total + value, 3))  # no float noise in the sum


@dataclass(frozen=True)
class Totals:
    """Every series' value, for any number of apps and environments."""

    deploys: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    rollbacks: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    durations: Mapping[Key, Histogram] = field(default_factory=dict)
    releases: Mapping[Key, LiveRelease] = field(default_factory=dict)
    last_success: Mapping[Key, float] = field(default_factory=dict)

    def only(self, app: str, env: str) -> Totals:
        """The series of one app and environment."""
        return Totals(
            {k: v for k, v in self.deploys.items() if k[:2] == (app, env)},
            {k: v for k, v in self.rollbacks.items() if k[:2] == (app, env)},
            {k: v for k, v in self.durations.items() if k == (app, env)},
            {k: v for k, v in self.releases.items() if k == (app, env)},
            {k: v for k, v in self.last_success.items() if k == (app, env)},
        )


def add(totals: Totals, record: RunRecord) -> Totals:
    """``totals`` with ``record`` counted."""
    key = (record.app, record.env)
    counted = (*key, record.outcome)
    if record.kind == "deploy":
        deploys = {**totals.deploys, counted: totals.deploys.get(counted, 0.0) + 1}
        totals = replace(totals, deploys=deploys)
        if record.outcome != "locked":  # locked out: it never ran
            histogram = totals.durations.get(key, Histogram())
            seconds = round(max(record.seconds, 0.0), 3)
            totals = replace(
                totals, durations={**totals.durations, key: histogram.observe(seconds)}
            )
        if record.outcome == "success":
            totals = replace(totals, last_success={**totals.last_success, key: record.finished_at})
    else:
        rollbacks = {**totals.rollbacks, counted: totals.rollbacks.get(counted, 0.0) + 1}
        totals = replace(totals, rollbacks=rollbacks)
    if record.live is not None:
        releases = {k: v for k, v in totals.releases.items() if k != key}
        if record.live != NO_SINGLE_RELEASE:
            releases[key] = record.live
        totals = replace(totals, releases=releases)
    return totals


# ---------------------------------------------------------------------------- written out


class _Collector:
    """The families of ``totals``, for a ``CollectorRegistry`` of their own."""

    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self.totals
        deploys = CounterMetricFamily(
            DEPLOYS, "Deploys by outcome.", labels=["app", "env", "outcome"]
        )
        for labels, value in sorted(t.deploys.items()):
            deploys.add_metric(list(labels), value)
        yield deploys
        duration = HistogramMetricFamily(
            DURATION,
            "How long deploys took, whatever their outcome (locked out: not counted).",
            labels=["app", "env"],
        )
        for key, histogram in sorted(t.durations.items()):
            bounds = [_bound(b) for b in (*BUCKETS, math.inf)]
            duration.add_metric(
                list(key), list(zip(bounds, histogram.counts, strict=True)), histogram.total
            )
        yield duration
        rollbacks = CounterMetricFamily(
            ROLLBACKS, "Rollbacks by outcome.", labels=["app", "env", "outcome"]
        )
        for labels, value in sorted(t.rollbacks.items()):
            rollbacks.add_metric(list(labels), value)
        yield rollbacks
        info = GaugeMetricFamily(
            RELEASE_INFO,
            "The release the environment runs (1); none while its hosts run different ones.",
            labels=["app", "env", "release", "revision"],
        )
        for key, live in sorted(t.releases.items()):
            info.add_metric([*key, live.release, live.revision], 1)
        yield info
        last = GaugeMetricFamily(
            LAST_SUCCESS,
            "When the last successful deploy ended (Unix time).",
            labels=["app", "env"],
        )
        for key, seconds in sorted(t.last_success.items()):
            last.add_metric(list(key), seconds)
        yield last


def _bound(bound: float) -> str:
    """A bucket's ``le`` as the text format writes it: ``5.0``, ``+Inf``."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def render(totals: Totals) -> bytes:
    """``totals`` in Prometheus's text format (what node_exporter's textfile collector and the
    Pushgateway read)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(totals))
    return generate_latest(registry)


# ---------------------------------------------------------------------------- read back


@dataclass(frozen=True)
class Sample:
    """One sample as read back: its name, labels and value."""

    name: str
    labels: Mapping[str, str]
    value: float


OURS = {DEPLOYS, ROLLBACKS, DURATION, RELEASE_INFO, LAST_SUCCESS}


def from_samples(samples: Iterable[Sample]) -> tuple[Totals, list[str]]:
    """The totals the samples of deploylib's series hold, and what was wrong with the others
    (which are left out). A series of an unknown outcome is kept: a later deploylib may count
    one more; a histogram with other buckets than ``BUCKETS`` starts over."""
    deploys: dict[tuple[str, str, str], float] = {}
    rollbacks: dict[tuple[str, str, str], float] = {}
    buckets: dict[Key, dict[float, float]] = {}
    sums: dict[Key, float] = {}
    releases: dict[Key, LiveRelease] = {}
    last_success: dict[Key, float] = {}
    problems: list[str] = []
    for sample in samples:
        labels = sample.labels
        if "app" not in labels or "env" not in labels:
            problems.append(f"{sample.name}: no app or env label; left out")
            continue
        key = (labels["app"], labels["env"])
        name = sample.name
        if name in (f"{DEPLOYS}_total", f"{ROLLBACKS}_total") and "outcome" in labels:
            counters = deploys if name.startswith(DEPLOYS) else rollbacks
            counters[(*key, labels["outcome"])] = sample.value
        elif name == f"{DURATION}_bucket" and "le" in labels:
            buckets.setdefault(key, {})[float(labels["le"])] = sample.value
        elif name == f"{DURATION}_sum":
            sums[key] = sample.value
        elif name == f"{DURATION}_count":
            pass  # the +Inf bucket
        elif name == RELEASE_INFO and {"release", "revision"} <= set(labels):
            if sample.value == 1:
                releases[key] = LiveRelease(labels["release"], labels["revision"])
        elif name == LAST_SUCCESS:
            last_success[key] = sample.value
        elif not name.endswith("_created"):
            problems.append(f"{name}: not one of deploylib's series; left out")
    durations: dict[Key, Histogram] = {}
    bounds = [*BUCKETS, math.inf]
    for key, by_bound in buckets.items():
        if sorted(by_bound) != bounds:
            problems.append(
                f"{DURATION}{{app={key[0]!r},env={key[1]!r}}}: other buckets than deploylib's; "
                "its counts start over"
            )
            continue
        durations[key] = Histogram(tuple(by_bound[b] for b in bounds), sums.get(key, 0.0))
    totals = Totals(deploys, rollbacks, durations, releases, last_success)
    return totals, list(dict.fromkeys(problems))


def parse_text(text: str) -> tuple[Totals, list[str]]:
    """The totals of a file in Prometheus's text format; raises ``ValueError`` when it is not
    in that format."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = [
        Sample(s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    return from_samples(samples)
