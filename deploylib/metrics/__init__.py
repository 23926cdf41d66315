"""Prometheus metrics of deploys and rollbacks (docs/operations.md), through prometheus-client.

* ``series``: the metrics as values (pure): a run's ``RunRecord``, the ``Totals`` kept across
  runs, read back from samples and written in the text format;
* ``gateway_api``: the Pushgateway's API (pure): a group's path, its samples from JSON;
* ``textfile``: ``metrics_file``, replaced whole under a lock, for node_exporter;
* ``pushgateway``: ``pushgateway``, read back and replaced within one deadline.

``publish`` does both for one run and returns warnings: metrics never fail a deploy. The
run's side (which outcome, which release is live, when) is ``deploylib.run_metrics``.
"""

from __future__ import annotations

from pathlib import Path

from deploylib.metrics.series import (
    NO_SINGLE_RELEASE,
    OUTCOMES,
    LiveRelease,
    RunRecord,
)

__all__ = ["NO_SINGLE_RELEASE", "OUTCOMES", "LiveRelease", "RunRecord", "publish"]


def publish(record: RunRecord, *, textfile: str | None, pushgateway: str | None) -> list[str]:
    """Count ``record`` in the textfile and on the Pushgateway that are set; the warnings."""
    warnings: list[str] = []
    if textfile:
        from deploylib.metrics import textfile as metrics_textfile

        warnings += metrics_textfile.update(Path(textfile), record)
    if pushgateway:
        from deploylib.metrics import pushgateway as gateway

        warnings += gateway.push(pushgateway, record)
    return warnings
