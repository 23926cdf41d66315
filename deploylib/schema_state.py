"""A database's migration state as deploylib records it with each release, and what a rollback
to an older release leaves behind in it.

The state is a list of applied migrations, one name each: ``app.0002_add_field`` for Django
(``manage.py showmigrations --plan``), the head revision ids for Alembic (``alembic current``),
or the lines any command prints. A release's state is the one recorded after its migrations ran;
the live database's is the last one recorded on the host, whatever the deploy's outcome (a
deploy that migrated, then failed verify and was put back, still changed the database)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: what ``migrate(schema=...)`` names: the command that prints the state, and its parser
_DJANGO_PLAN = re.compile(r"^\s*\[X\]\s+(\S+)")
_ALEMBIC_HEAD = re.compile(r"^([0-9A-Za-z_]+)\b")

SCHEMA_COMMANDS = {
    "django": '"$py" manage.py showmigrations --plan',
    "alembic": '"$alembic" current',
}
#: the interpreter (and alembic) of the release's own environment when it has one
_TOOLS = (
    "py=python3; [ ! -x .venv/bin/python ] || py=.venv/bin/python; alembic=alembic; "
    "[ ! -x .venv/bin/alembic ] || alembic=.venv/bin/alembic; "
)


def schema_script(schema: str) -> str:
    """The shell that prints the state: a known kind, or the user's own command."""
    known = SCHEMA_COMMANDS.get(schema)
    return _TOOLS + known if known else schema


def parse(schema: str, output: str) -> tuple[str, ...]:
    """The applied migrations in ``output``, in order, each once."""
    found: list[str] = []
    for line in output.splitlines():
        if schema == "django":
            match = _DJANGO_PLAN.match(line)
            name = match.group(1) if match else None
        elif schema == "alembic":
            match = _ALEMBIC_HEAD.match(line.strip())
            name = match.group(1) if match and not line.startswith("INFO") else None
        else:
            name = line.strip() or None
        if name and name not in found:
            found.append(name)
    return tuple(found)


def recorded(
    log: Sequence[Mapping[str, Any]], release: str | None = None
) -> tuple[str, ...] | None:
    """The state in the last log line that carries one (of ``release``'s successful deploys
    when given); None when no line does."""
    for entry in reversed(log):
        schema = entry.get("schema")
        if not isinstance(schema, list):
            continue
        if release is not None and (
            entry.get("release") != release
            or entry.get("event") != "deploy"
            or entry.get("outcome") != "success"
        ):
            continue
        return tuple(str(name) for name in schema)
    return None


def beyond(live: Iterable[str], target: Iterable[str]) -> list[str]:
    """Migrations the live database has that the target release does not know."""
    known = set(target)
    return [name for name in live if name not in known]


def django_undo(live: Sequence[str], target: Sequence[str]) -> str:
    """``manage.py migrate APP NAME`` for each app the target release is behind on, back to its
    last migration there (``zero`` when it has none), newest app first."""
    apps: list[str] = []
    for name in beyond(live, target):
        app = name.split(".", 1)[0]
        if app not in apps:
            apps.append(app)
    lines = []
    for app in reversed(apps):
        mine = [n.split(".", 1)[1] for n in target if n.split(".", 1)[0] == app and "." in n]
        back_to = shlex.join([app, mine[-1] if mine else "zero"])
        lines.append(_TOOLS + '"$py" manage.py migrate --no-input ' + back_to)
    return "\n".join(lines)


def alembic_undo(target: Sequence[str]) -> str:
    """``alembic downgrade`` to the target release's head (``base`` when it had none); a
    target with several heads is gone back to one at a time, as Alembic requires."""
    heads = list(target) or ["base"]
    return "\n".join(_TOOLS + '"$alembic" downgrade ' + shlex.quote(head) for head in heads)


#: what ``migrate(undo=...)`` names besides a command of the user's
UNDO_KINDS = ("django", "alembic")


def undo_script(undo: str, live: Sequence[str], target: Sequence[str]) -> str:
    """The shell that takes the database from ``live`` back to ``target``."""
    if undo == "django":
        return django_undo(live, target)
    if undo == "alembic":
        return alembic_undo(target)
    return undo
