"""The deploy lock on a target: taking it (prepared whole, renamed into place), its heartbeat,
checking it is still this deploy's, and releasing it.

Every command that changes a target after it was locked runs behind ``lock_guard``
(``Command.guard``): it runs only while the lock's ``owner.json`` still holds this deploy's
token, so a deploy that lost its lock (removed by hand, taken by another deploy) changes
nothing more there. Whether a held lock is stale is decided on the controller (``locks``)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from deploylib.commands import Command
from deploylib.remote import gnu, sparing
from deploylib.remote.layout import Layout, check_token
from deploylib.remote.reading import state_script

#: the lock command's exit status when another deploy holds the lock
LOCK_HELD_EXIT = 75
#: a guarded command's exit status when this deploy no longer holds the lock
LOCK_LOST_EXIT = 76


def _owner_holds(layout: Layout, token: str, then: str, otherwise: str) -> str:
    """Shell that runs ``then`` if the lock's ``owner.json`` names ``token``, else
    ``otherwise``. Shell built-ins only (read, case): no process, and no PATH to trust, since
    it runs before every change (the owner is one JSON line; a missing or unreadable file holds
    no token)."""
    q = shlex.quote
    owner = q(layout.lock + "/owner.json")
    return (
        # `|| :`: a shell started with `set -e` (BASH_ENV, a .bashrc) goes on to the `case`
        f"__dl_owner=; {{ IFS= read -r __dl_owner < {owner} || :; }} 2>/dev/null; "
        f"case $__dl_owner in *{q(check_token(token))}*) unset __dl_owner; {then};; "
        f"*) unset __dl_owner; {otherwise};; esac"
    )


def lock_guard(layout: Layout, token: str) -> str:
    """Shell that fails with ``LOCK_LOST_EXIT`` unless this deploy still holds the lock."""
    message = "the deploy lock here is no longer this deploy's (removed or taken over)"
    lost = f"echo {shlex.quote(message)} >&2; exit {LOCK_LOST_EXIT}"
    return f"{{ {_owner_holds(layout, token, ':', lost)}; }}"


def guard_for(layout: Layout, token: str | None) -> str:
    """The ``Command.guard`` of a change made under the lock ``token`` ("" without one)."""
    return lock_guard(layout, token) if token else ""


def lock_command(layout: Layout, owner: Mapping[str, Any], *, manifest: bool = False) -> Command:
    """Take the lock, then print the state (``state_script``) whatever happened.

    The lock is prepared whole in a directory of its own (``owner.json``, ``heartbeat``) and
    renamed into place with rename(2): it exists with its owner or not at all, also when the
    disk is full or the command is cut off. Exit 0 when taken, ``LOCK_HELD_EXIT`` when another
    deploy holds it (the state printed names the owner), 1 when it could not be written.
    With ``manifest``, the state has the live release's manifest (``push(delta=True)``).
    """
    q = shlex.quote
    token = str(owner["token"])
    stage = layout.lock_stage(token)
    owner_file = f"{stage}/owner.json"
    script = (
        f"if ! {{ {sparing.make_dirs(layout.meta)} && {sparing.remove(stage, tree=True)} && "
        f"mkdir {q(stage)} && "
        # the owner is one line: written by the shell itself, no process
        f"IFS= read -r __dl_o && printf '%s\\n' \"$__dl_o\" > {q(owner_file)} && "
        f"unset __dl_o && : > {q(stage + '/heartbeat')}; }}; then "
        f"rm -rf {q(stage)}; echo {q('could not write the deploy lock in ' + layout.meta)} >&2; "
        "rc=1; "
        f"elif [ ! -e {q(layout.lock)} ] && {gnu.rename_onto(stage, layout.lock)} 2>/dev/null; "
        "then rc=0; "
        f"else rm -rf {q(stage)}; rc={LOCK_HELD_EXIT}; fi; "
        f"{state_script(layout, manifest=manifest, after_lock=True)}; exit $rc"
    )
    return Command(script, stdin=(json.dumps(dict(owner)) + "\n").encode(), description="lock")


def heartbeat_command(layout: Layout, token: str) -> Command:
    """Touch the heartbeat of a lock this deploy still holds (never someone else's); fails with
    ``LOCK_LOST_EXIT`` when the lock is no longer ours."""
    return Command.of(
        "touch",
        layout.lock + "/heartbeat",
        description="heartbeat",
        timeout=10,
        guard=guard_for(layout, token),
    )


def unlock_command(layout: Layout, token: str | None = None) -> Command:
    """Remove the lock if it is ``token``'s (and the stage a cut-off lock command may have
    left); without a token, whatever lock there is (``unlock --force``)."""
    q = shlex.quote
    if token is None:
        return Command.of("rm", "-rf", layout.lock, description="unlock")
    other = (
        f"if [ -e {q(layout.lock)} ]; then echo 'the lock is held by another deploy now' >&2; "
        "exit 1; fi"
    )
    script = f"{sparing.remove(layout.lock_stage(token), tree=True)}; " + _owner_holds(
        layout, token, f"rm -rf {q(layout.lock)}", other
    )
    return Command(script, description="unlock")


def check_lock_command(layout: Layout, token: str) -> Command:
    """Pass while this deploy holds the lock (before anything goes live)."""
    return Command("true", description="check lock", timeout=30, guard=guard_for(layout, token))
