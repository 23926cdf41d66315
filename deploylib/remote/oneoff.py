"""The commands of ``exec`` and ``logs``, built as data: a user's command run in ``current``
with the release's environment, and ``tail`` over the logs in ``shared``.

The user's command is one shell script, run exactly as given: it reaches the target's shell as
a single quoted word that ``eval`` parses once, so its quotes, ``$(...)`` and newlines mean on
the host what they mean in a script, and nothing deploylib wraps around it can be broken by it.
Env-file variables travel as a ``Command``'s ``env`` (the process environment, or stdin over
SSH), never on the command line.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence

from deploylib.commands import Command
from deploylib.errors import ConfigError
from deploylib.remote.layout import Layout
from deploylib.secrets import Secret

#: lines ``logs`` shows of each file unless ``--lines`` says otherwise
DEFAULT_LINES = 100
#: where ``logs`` looks without PATHs: every ``*.log`` file of this directory of ``shared``
LOG_DIR = "log"
#: a command's deadline when it has none: ``logs --follow`` runs until Ctrl-C (a year; dead
#: links are still noticed by the keepalives)
UNBOUNDED = 365 * 24 * 3600.0


def command_of(command: str | None, words: Sequence[str] = ()) -> str:
    """The script ``exec`` runs: ``--command``, or the words after ``--``. One word is a
    script, run as it is; several are a program and its arguments, each kept one word."""
    if command is not None and words:
        raise ConfigError("give the command after '--' or as --command, not both", key="--")
    if command is None:
        command = words[0] if len(words) == 1 else shlex.join(words)
    if not command.strip():
        raise ConfigError(
            "no command to run: deploylib exec --env E -- CMD (or --command CMD)", key="CMD"
        )
    return command


def _no_release(layout: Layout) -> str:
    message = f"deploylib: no release is live on this host: {layout.current} does not exist"
    return f"[ -e {shlex.quote(layout.current)} ] || {{ echo {shlex.quote(message)} >&2; exit 1; }}"


def exec_command(
    layout: Layout,
    script: str,
    env: Mapping[str, str | Secret],
    timeout: float,
) -> Command:
    """``script`` run in ``current`` with ``env``, and with ``current/.venv/bin`` first on
    ``PATH`` when the release has one. A host with no ``current`` says so and exits 1."""
    current = shlex.quote(layout.current)
    venv_bin = shlex.quote(f"{layout.current}/.venv/bin")
    wrapper = (
        f"{_no_release(layout)}; "
        f"cd {current} || exit 1; "
        f'if [ -d {venv_bin} ]; then PATH={venv_bin}:"$PATH"; export PATH; fi; '
        f"eval {shlex.quote(script)}"
    )
    return Command(wrapper, env=dict(env), timeout=timeout, description="exec")


def log_paths(layout: Layout, paths: Sequence[str]) -> list[str]:
    """The absolute paths of ``logs`` PATHs: relative ones are relative to ``shared``; every
    one must stay inside ``deploy_to`` (a ``ConfigError`` names the first that does not)."""
    root = posixpath.normpath(layout.deploy_to)
    resolved = []
    for path in paths:
        if not path or "\n" in path or "\0" in path:
            raise ConfigError(f"not a path: {path!r}", key="PATH")
        full = posixpath.normpath(posixpath.join(layout.shared, path))
        if full != root and not full.startswith(root.rstrip("/") + "/"):
            raise ConfigError(f"{path!r} is outside {layout.deploy_to}", key="PATH")
        resolved.append(full)
    return resolved


def logs_command(layout: Layout, paths: Sequence[str], *, lines: int, follow: bool) -> Command:
    """``tail`` of ``paths`` (absolute, see ``log_paths``), or of every ``*.log`` in
    ``shared/log``; ``follow`` keeps reading (``tail -F``: also across log rotation)."""
    tail = f"tail -n {int(lines)}" + (" -F" if follow else "")
    timeout = UNBOUNDED if follow else None
    if paths:
        words = " ".join(shlex.quote(path) for path in paths)
        return Command(f"exec {tail} -- {words}", timeout=timeout, description="logs")
    directory = f"{layout.shared}/{LOG_DIR}"
    missing = f"deploylib: no *.log file in {directory}"
    script = (
        f"cd {shlex.quote(directory)} || exit 1; set -- *.log; "
        f'[ -e "$1" ] || {{ echo {shlex.quote(missing)} >&2; exit 1; }}; '
        f'exec {tail} -- "$@"'
    )
    return Command(script, timeout=timeout, description="logs")
