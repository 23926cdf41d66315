"""Commands run as another user: ``sudo -n -u USER -- sh -c SCRIPT``.

``-n`` makes sudo fail at once where it would ask for a password (a deploy has nobody to type
one); the command then explains the sudoers rule it needs. sudo resets the environment, so the
command's variables (secrets among them) travel on its stdin, read by ``ENV_PRELUDE`` inside
the ``sh -c``: never on a command line, where ``ps`` would show them. A login user that already
is ``USER`` runs the same ``sh -c`` without sudo. The deploy lock's guard stays outside: it is
the login user's lock."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace

from deploylib.commands import Command
from deploylib.secrets import Secret
from deploylib.stdin_env import ENV_PRELUDE, env_block

USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: the file the suggested sudoers rule goes into (edited with ``visudo -f``)
SUDOERS_FILE = "/etc/sudoers.d/deploylib"


def sudo_hint(user: str, command: str) -> str:
    """Shell that prints why ``sudo -n`` refused, and the rule that lets ``command`` run."""
    q = shlex.quote
    message = (
        f"deploylib: sudo -n could not run this as {user} without a password (deploylib "
        "never waits for one). Allow it with a NOPASSWD rule, e.g. in "
        f"{SUDOERS_FILE} (edit with visudo -f {SUDOERS_FILE}):"
    )
    rule = f"$(id -un) ALL=({user}) NOPASSWD: {command}"
    return f'echo {q(message)} >&2; echo "  {rule}" >&2'


def as_user(command: Command, user: str) -> Command:
    """``command`` run as ``user`` through ``sudo -n``, its variables on stdin."""
    if not USER_NAME.fullmatch(user):
        raise ValueError(f"not a user name: {user!r}")
    q = shlex.quote
    inner = ENV_PRELUDE + command.line
    head = env_block(command.env)
    stdin: bytes | Secret
    if isinstance(command.stdin, Secret) or any(
        isinstance(v, Secret) for v in command.env.values()
    ):
        rest = command.stdin_bytes() or b""
        stdin = Secret(head + rest.decode("utf-8", "surrogateescape"))
    else:
        stdin = head.encode() + (command.stdin_bytes() or b"")
    sudo = f"sudo -n -u {q(user)} -- sh -c {q(inner)}"
    check = f"sudo -n -l -u {q(user)} sh -c : >/dev/null 2>&1"
    script = (
        f'if [ "$(id -un)" = {q(user)} ]; then sh -c {q(inner)}; else {sudo} || {{ '
        f"__dls=$?; {check} || {{ {sudo_hint(user, 'ALL')}; }}; exit $__dls; }}; fi"
    )
    return replace(command, script=script, cwd=None, env={}, stdin=stdin)
