"""Tables for ``status``, ``releases`` and ``check``: rich on a terminal, JSON with ``--json``.

Every cell and title that holds text from a host or from deploy.toml goes through ``_plain``:
terminal escape sequences removed, control characters made visible, rich markup escaped.
JSON output keeps the data exact, with every control character escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deploylib.text import printable


def _plain(value: object) -> str:
    """A cell from a host's answer: shown as written, never read as rich markup or as a
    terminal control sequence."""
    return escape(printable("" if value is None else str(value)))


def redacted(rows: Sequence[dict[str, Any]], redact: Callable[[str], str]) -> list[dict[str, Any]]:
    """``rows`` with ``redact`` applied to every string in them, keys and nested values too:
    what a host answers (a lock owner, a release log's error) may hold a secret."""
    return [_redact_value(row, redact) for row in rows]


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact_value(k, redact): _redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, redact) for v in value]
    return value


def print_json(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as JSON: the data exact, every control character escaped (``json.dumps`` leaves
    DEL as it is)."""
    text = json.dumps(list(rows), indent=2, default=str).replace("\x7f", "\\u007f")
    console.out(text, highlight=False)


def status_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"status of {_plain(env)}", title_justify="left")
    errors = any(row.get("error") or row.get("history_problem") for row in rows)
    columns = ["host", "current", "revision", "deployed at", "by", "took", "lock"]
    with_slots = any(row.get("slots") for row in rows)
    if with_slots:
        columns.append("slots")
    for column in [*columns, "note"] if errors else columns:
        table.add_column(column)
    for row in rows:
        if row.get("error"):
            cells = [_plain(row["host"]), "[red]unreachable[/]", "", "", "", "", ""]
            cells += [""] if with_slots else []
            table.add_row(*cells, f"[red]{_plain(row['error'])}[/]")
            continue
        owner = row["lock_owner"] or {}
        lock = "—"
        if row["locked"]:
            who = _plain(f"{owner.get('user', '?')}@{owner.get('host', '?')}")
            lock = f"[yellow]locked by {who} since {_plain(owner.get('started_at', '?'))}[/]"
            if row.get("lock_stale"):
                lock += f" [red]STALE: {_plain(row['lock_stale'])}[/]"
        current = _plain(row["current"]) or "[dim](none)[/]"
        cells = [
            _plain(row["host"]),
            f"[yellow]≠ {current}[/]" if row.get("differs") else current,
            _plain(row["revision"]),
            _plain(row["deployed_at"]),
            _plain(row["deployed_by"]),
            f"{row['took']:g} s" if isinstance(row.get("took"), int | float) else "",
            lock,
            *([slots_cell(row.get("slots"))] if with_slots else []),
        ]
        note = f"[yellow]{_plain(row['history_problem'])}[/]" if row.get("history_problem") else ""
        table.add_row(*cells, *([note] if errors else []))
    return table


def slots_cell(slots: dict[str, Any] | None) -> str:
    """``blue* 20261128T…  green 20261127T…``: each slot's release, the live one starred."""
    if not slots:
        return ""
    cells = []
    for name, record in sorted((slots.get("slots") or {}).items()):
        release = _plain(record.get("release")) or "[dim](stopped)[/]"
        live = name == slots.get("live")
        cells.append(f"[bold]{name}*[/] {release}" if live else f"{name} {release}")
    return "  ".join(cells)


_OUTCOME_STYLE = {"success": "green", "failed": "red", "rolled_back": "yellow"}


def releases_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"releases of {_plain(env)}", title_justify="left")
    columns = ["time", "event", "release", "revision", "outcome", "by", "hosts", "on disk"]
    # a failed or rolled-back event says where and why: its error's first line (step, host)
    errors = any(row.get("error") for row in rows)
    for column in [*columns, "error"] if errors else columns:
        table.add_column(column)
    for row in rows:
        error = str(row.get("error") or "").strip().splitlines()
        style = _OUTCOME_STYLE.get(str(row["outcome"]), "")
        outcome = f"[{style}]{_plain(row['outcome'])}[/]" if style else _plain(row["outcome"])
        table.add_row(
            _plain(row["time"]),
            _plain(row["event"]),
            _plain(row["release"]),
            _plain(row["revision"]),
            outcome,
            _plain(row["user"]),
            _plain(", ".join(row["hosts"])),
            f"{len(row['on_disk'])}/{len(row['hosts'])}",
            *([f"[red]{_plain(error[0])}[/]" if error else ""] if errors else []),
        )
    return table


def check_table(rows: Sequence[dict[str, Any]], env: str) -> Table:
    table = Table(title=f"check of {_plain(env)}", title_justify="left")
    for column in ("host", "ok", "user", "writable", "free MB", "problems"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            _plain(row["host"]),
            "[green]yes[/]" if row["ok"] else "[red]no[/]",
            _plain(row["user"]),
            "yes" if row["writable"] else "no",
            _plain(row["free_mb"] if row["free_mb"] is not None else "?"),
            _plain("; ".join(row["problems"])),
        )
    return table


def reached_line(row: dict[str, Any]) -> str:
    """How one host is reached, on a line (``check --verbose``)."""
    ssh = row.get("ssh")
    if not ssh:
        return f"{_plain(row['host'])}: this machine, no SSH"
    keys = ", ".join(str(k) for k in ssh.get("identity_files") or [])
    jump = f" via {_plain(ssh['proxy_jump'])}" if ssh.get("proxy_jump") else ""
    return (
        f"{_plain(row['host'])}: {_plain(ssh['user'])}@{_plain(ssh['hostname'])}:"
        f"{_plain(ssh['port'])}{jump}, keys {_plain(keys)}"
    )
