"""``WebhookReporter``: a JSON document POSTed when a deploy or rollback starts and ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from deploylib.reporting.events import Event


class WebhookReporter:
    """POSTs a JSON document to ``url`` when a deploy or rollback starts and ends.

    Sits behind ``Redacting`` like every reporter. A notification never fails or holds up the
    deploy: ``timeout`` (5 s) bounds each POST as a whole (connect, sending, the answer's
    headers and body), so a webhook that answers a byte at a time is cut off at the deadline;
    Ctrl-C during a notification ends it at once. A failure, a timeout or an interrupt is told
    to ``on_error`` and ``emit`` returns normally — except Ctrl-C during a ``.start``
    notification, which nothing has been done after yet: it goes on up and stops the run there.
    """

    KINDS = frozenset(
        {
            "deploy.start",
            "deploy.ok",
            "deploy.failed",
            "rollback.start",
            "rollback.ok",
            "rollback.failed",
        }
    )

    def __init__(
        self,
        url: str,
        context: Mapping[str, Any],
        on_error: Callable[[str], None],
        timeout: float = 5.0,
        *,
        on_sent: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.url = url
        self.context = dict(context)
        self.on_error = on_error
        self.on_sent = on_sent
        self.timeout = timeout
        self._started: float | None = None
        self._revision: object = None  # the run's, from its start

    #: what of an event's data the webhook carries
    FIELDS = ("release", "placement", "doubts", "revision")

    def emit(self, event: Event) -> None:
        if event.kind not in self.KINDS or event.data.get("dry_run"):
            return  # a dry run notifies nobody
        from deploylib.probes import post_json

        if event.kind.endswith(".start"):
            self._started = time.monotonic()
            self._revision = event.data.get("revision")
        seconds = (
            None
            if self._started is None or event.kind.endswith(".start")
            else round(time.monotonic() - self._started, 1)
        )
        body = {
            "event": event.kind,
            "text": self.text(event, seconds),
            **({"seconds": seconds} if seconds is not None else {}),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "message": event.message,
            **self.context,
            **{
                k: v
                for k, v in event.data.items()
                if k in ("release", "placement", "doubts", "revision")
            },
        }
        try:
            post_json(self.url, body, timeout=self.timeout)
        except KeyboardInterrupt:
            self.on_error(f"notify webhook: {event.kind} not sent: interrupted")
            if event.kind.endswith(".start"):
                raise
        except (OSError, ValueError) as exc:  # DeadlineExceeded is a TimeoutError
            self.on_error(f"notify webhook: {event.kind}: {exc.__class__.__name__}: {exc}")
        else:
            self.on_sent(f"notify webhook: {event.kind} sent")

    def text(self, event: Event, seconds: float | None) -> str:
        """One line for people (Slack's ``text``): who did what where, the outcome, how long
        it took; no links, Slack's ``& < >`` escaped."""
        who = self.context.get("user") or "someone"
        app, env = self.context.get("app", "?"), self.context.get("env", "?")
        release = event.data.get("release") or ""
        revision = event.data.get("revision") or self._revision
        what = f"{app} {release}".strip() + (f" (revision {revision})" if revision else "")
        took = f" in {seconds:g} s" if seconds is not None else ""
        reason = (event.message or "").strip().splitlines()
        why = f": {reason[0][:200]}" if reason else ""
        lines = {
            "deploy.start": f"{who} is deploying {what} to {env}",
            "deploy.ok": f"{who} deployed {what} to {env}: success{took}",
            "deploy.failed": f"{who}'s deploy of {app} to {env} failed{took}{why}",
            "rollback.start": f"{who} is rolling back {app} on {env}",
            "rollback.ok": f"{who} rolled back {app} on {env}"
            + (f" to {release}" if release else "")
            + f": success{took}",
            "rollback.failed": f"{who}'s rollback of {app} on {env} failed{took}{why}",
        }
        line = " ".join(lines.get(event.kind, event.kind).split())
        return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
