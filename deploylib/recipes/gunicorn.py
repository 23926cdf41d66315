"""gunicorn, started from the release's virtual environment and replaced without a failed request.

``gunicorn(...)`` is the ``switch(restart=...)`` step; ``gunicorn_restart(...)`` its script. The
first deploy starts gunicorn as a daemon; later deploys (and a put-back) send the running master
USR2, which re-executes ``sys.executable`` with its arguments: a new master on the new release,
serving the listening socket it inherits. Once its workers are up the old master gets TERM (a
graceful stop: its workers finish their requests). HUP would not do: it keeps the master's
interpreter and every module the master imported (all of the app with ``--preload``).

gunicorn is run as ``{current_path}/.venv/bin/python {current_path}/.venv/bin/gunicorn`` when the
venv has gunicorn, else as ``{current_path}/.venv/bin/python -m gunicorn``: both paths go through
``current``, so the re-executed master is the new release's Python and venv (a venv's
``sys.prefix`` is the path it was started by, symlinks unresolved). Without a ``.venv`` in the
release it is ``python3 -m gunicorn`` from the PATH.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deploylib.errors import ConfigError
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, switch

#: where the recipe keeps the master's pid (gunicorn writes ``<pidfile>.2`` for a new master
#: until the old one is gone)
PIDFILE = "{shared_path}/gunicorn.pid"
LOGFILE = "{shared_path}/log/gunicorn.log"

_SCRIPT = """\
# gunicorn (deploylib.recipes): start it, or replace the running master (USR2, then TERM the old)
current={current_path}
pidfile={pidfile}
log={logfile}
wait_for() {{  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  __n=$(($1 * 10)); shift
  until "$@"; do
    [ "$__n" -gt 0 ] || return 1
    __n=$((__n - 1)); sleep 0.1
  done
}}
master() {{  # master FILE: the live gunicorn master whose pid FILE holds
  __p=$(cat "$1" 2>/dev/null) && [ -n "$__p" ] && kill -0 "$__p" 2>/dev/null \\
    && grep -q gunicorn "/proc/$__p/cmdline" 2>/dev/null && echo "$__p"
}}
workers_of() {{ grep -ls "^PPid:[[:space:]]*$1\\$" /proc/[0-9]*/status 2>/dev/null | wc -l; }}
ready() {{ new=$(master "$pidfile.2") && [ "$(workers_of "$new")" -ge {workers} ]; }}
gone() {{ ! kill -0 "$1" 2>/dev/null; }}
promoted() {{ [ "$(master "$pidfile")" = "$new" ]; }}
if [ -x "$current/.venv/bin/gunicorn" ]; then
  set -- "$current/.venv/bin/python" "$current/.venv/bin/gunicorn"
elif [ -x "$current/.venv/bin/python" ]; then
  set -- "$current/.venv/bin/python" -m gunicorn
else
  set -- python3 -m gunicorn
fi
set -- "$@" --chdir "$current" --bind {bind} --workers {workers}{options} \\
  --pid "$pidfile" --daemon --error-logfile "$log"{args} {app}
mkdir -p "$(dirname "$pidfile")" "$(dirname "$log")"
"$@" --check-config || {{ echo "gunicorn cannot load the app from $current" >&2; exit 1; }}
old=$(master "$pidfile") || old=
stray=$(master "$pidfile.2") && kill -TERM "$stray" && wait_for {timeout} gone "$stray"
if [ -z "$old" ]; then
  "$@" || exit
  wait_for {timeout} master "$pidfile" >/dev/null \\
    || {{ echo "gunicorn did not start: see $log" >&2; exit 1; }}
  exit 0
fi
kill -USR2 "$old"
if ! wait_for {timeout} ready; then
  echo "the new gunicorn master did not come up: see $log; $old still serves" >&2
  [ -n "$new" ] && kill -TERM "$new"
  exit 1
fi
kill -TERM "$old"
wait_for {timeout} gone "$old" || {{ echo "the old master $old did not stop" >&2; exit 1; }}
wait_for {timeout} promoted \
  || {{ echo "gunicorn did not move $pidfile.2 to $pidfile" >&2; exit 1; }}
"""


def gunicorn_restart(
    app: str = "app:app",
    *,
    bind: str = "127.0.0.1:8000",
    workers: int = 2,
    worker_class: str | None = None,
    preload: bool = False,
    args: Sequence[str] = (),
    pidfile: str = PIDFILE,
    logfile: str = LOGFILE,
    timeout: int = 60,
) -> str:
    """The restart script of ``gunicorn(...)``, for a ``switch(restart=...)`` of your own."""
    if workers < 1 or timeout < 1:
        raise ConfigError("gunicorn(): workers and timeout must be at least 1")
    options = ""
    if worker_class:
        options += f" --worker-class {worker_class}"
    if preload:
        options += " --preload"
    return _SCRIPT.format(
        current_path="{current_path}",
        pidfile=pidfile,
        bind=bind,
        workers=int(workers),
        options=options,
        logfile=logfile,
        args="".join(f" {a}" for a in args),
        app=app,
        timeout=int(timeout),
    )


def gunicorn(
    app: str = "app:app",
    *,
    bind: str = "127.0.0.1:8000",
    workers: int = 2,
    worker_class: str | None = None,
    preload: bool = False,
    args: Sequence[str] = (),
    pidfile: str = PIDFILE,
    logfile: str = LOGFILE,
    timeout: int = 60,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The ``switch`` step that serves the release with gunicorn (see the module's docstring).

    ``app``, ``bind``, ``worker_class``, ``args``, ``pidfile`` and ``logfile`` are shell text,
    as in ``run(...)``: placeholders are filled, ``$VAR`` expands on the target
    (``bind="127.0.0.1:${PORT:-8000}"``, ``bind="unix:{shared_path}/gunicorn.sock"``).
    ``timeout`` bounds each wait, in seconds: for the new master's workers, for the old master
    to finish its requests. ``sudo`` runs it as another user, as in ``run(...)``."""
    return switch(
        restart=gunicorn_restart(
            app,
            bind=bind,
            workers=workers,
            worker_class=worker_class,
            preload=preload,
            args=args,
            pidfile=pidfile,
            logfile=logfile,
            timeout=timeout,
        ),
        sudo=sudo,
        before=before,
        after=after,
    )


#: the ASGI worker of the uvicorn-worker package (``uvicorn.workers`` is deprecated upstream)
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"


def uvicorn(
    app: str = "app:app",
    *,
    worker_class: str = UVICORN_WORKER,
    **options: Any,
) -> Step:
    """An ASGI app served by gunicorn with uvicorn's worker: ``gunicorn(...)`` with
    ``worker_class`` (install ``uvicorn-worker`` into the release's venv)."""
    return gunicorn(app, worker_class=worker_class, **options)
