"""The bundled example: a tiny WSGI app that says which release it runs.

``/health`` answers ``ok <release>``: the release id comes from the REVISION file deploylib
writes into every release, found through this file's real path (``current`` resolved).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _release() -> str:
    try:
        return (HERE / "REVISION").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return "unreleased"


RELEASE = _release()
GREETING = os.environ.get("HELLO_GREETING", "hello")


def app(
    environ: dict[str, object], start_response: Callable[[str, list[tuple[str, str]]], object]
) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/health":
        body = f"ok {RELEASE}\n"
    else:
        body = f"{GREETING} from release {RELEASE}\n"
    data = body.encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]
