"""Tables for ``status``, ``releases`` and ``check``: rich on a terminal, JSON with ``--json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def print_json(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    console.out(json.dumps(list(rows), indent=2, default=str), highlight=False)


def status_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"status of {env}", title_justify="left")
    for column in ("host", "current", "revision", "deployed at", "by", "lock"):
        table.add_column(column)
    for row in rows:
        owner = row["lock_owner"] or {}
        lock = "—"
        if row["locked"]:
            who = f"{owner.get('user', '?')}@{owner.get('host', '?')}"
            lock = f"[yellow]locked by {who} since {owner.get('started_at', '?')}[/]"
        table.add_row(
            row["host"],
            row["current"] or "[dim](none)[/]",
            row["revision"] or "",
            row["deployed_at"] or "",
            row["deployed_by"] or "",
            lock,
        )
    return table


_OUTCOME_STYLE = {"success": "green", "failed": "red", "rolled_back": "yellow"}


def releases_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"releases of {env}", title_justify="left")
    for column in ("time", "event", "release", "revision", "outcome", "by", "hosts", "on disk"):
        table.add_column(column)
    for row in rows:
        style = _OUTCOME_STYLE.get(str(row["outcome"]), "")
        outcome = f"[{style}]{row['outcome']}[/]" if style else str(row["outcome"])
        table.add_row(
            str(row["time"]),
            str(row["event"]),
            str(row["release"]),
            str(row["revision"] or ""),
            outcome,
            str(row["user"] or ""),
            ", ".join(row["hosts"]),
            f"{len(row['on_disk'])}/{len(row['hosts'])}",
        )
    return table


def check_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"check of {env}", title_justify="left")
    for column in ("host", "ok", "user", "writable", "free MB", "problems"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["host"],
            "[green]yes[/]" if row["ok"] else "[red]no[/]",
            str(row["user"] or ""),
            "yes" if row["writable"] else "no",
            str(row["free_mb"] if row["free_mb"] is not None else "?"),
            "; ".join(row["problems"]),
        )
    return table
