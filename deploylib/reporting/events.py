"""What a reporter is shown: ``Event``, and the ``Reporter`` protocol every rendering follows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    """Something that happened. ``kind`` is dotted: ``deploy.start``, ``step.failed``, ..."""

    kind: str
    message: str = ""
    host: str | None = None
    step: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...
