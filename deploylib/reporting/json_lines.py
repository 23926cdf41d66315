"""``JsonLinesReporter``: one JSON object per event (``--events FILE``)."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from deploylib.reporting.events import Event


class JsonLinesReporter:
    """One JSON object per event, flushed at once: safe to ``tail -f``."""

    def __init__(self, stream: IO[str], deploy_id: str | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        #: the same on every event of this run: a file appended to by many runs is split by it
        self.deploy_id = deploy_id or secrets.token_hex(8)

    @classmethod
    def open(cls, path: Path) -> JsonLinesReporter:
        return cls(path.open("a", encoding="utf-8"))

    def emit(self, event: Event) -> None:
        if event.kind == "output":
            return  # commands' output is the deploy's log file's (docs/events.md)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        # docs/events.md, deploylib.reporting.schema
        record: dict[str, Any] = {"event": event.kind, "ts": now, "deploy_id": self.deploy_id}
        if event.host:
            record["host"] = event.host
        if event.step:
            record["step"] = event.step
        if event.message:
            record["message"] = event.message
        record.update(event.data)
        with self._lock:
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self._stream.close()
