"""gunicorn on blue-green slots: ``gunicorn_slots(...)`` is the ``switch(start=..., stop=...)``
step of the ``blue_green`` strategy (docs/strategies.md).

Each slot runs its own gunicorn master, bound to ``127.0.0.1:{port}``, its pid in
``{shared_path}/gunicorn-{slot}.pid``. ``start`` runs the release from its own directory (not
``current``, which still names the live release while the new one is checked) with the release's
``.venv`` when it has one, and returns once the master wrote its pid file (the checks then wait
for it to answer). ``stop`` sends the slot's master TERM — a graceful stop: its workers finish
their requests — and waits until it is gone; a slot with nothing running is already stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploylib.errors import ConfigError
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, switch

PIDFILE = "{shared_path}/gunicorn-{slot}.pid"
LOGFILE = "{shared_path}/log/gunicorn-{slot}.log"

_HELPERS = """\
wait_for() {{  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  __n=$(($1 * 10)); shift
  until "$@"; do
    [ "$__n" -gt 0 ] || return 1
    __n=$((__n - 1)); sleep 0.1
  done
}}
master() {{  # the live gunicorn master whose pid the slot's pid file holds
  __p=$(cat "$pidfile" 2>/dev/null) && [ -n "$__p" ] && [ -e "/proc/$__p" ] \\
    && ! grep -q '^State:.*Z' "/proc/$__p/status" 2>/dev/null \\
    && grep -q gunicorn "/proc/$__p/cmdline" 2>/dev/null && echo "$__p"
}}
gone() {{ ! [ -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }}
pidfile={pidfile}
"""

_START = """\
# gunicorn on slot {{slot}} (deploylib.recipes.gunicorn_slots): start the release there
{helpers}log={logfile}
release={{release_path}}
if [ -x "$release/.venv/bin/gunicorn" ]; then
  set -- "$release/.venv/bin/python" "$release/.venv/bin/gunicorn"
elif [ -x "$release/.venv/bin/python" ]; then
  set -- "$release/.venv/bin/python" -m gunicorn
else
  set -- python3 -m gunicorn
fi
set -- "$@" --chdir "$release" --bind 127.0.0.1:{{port}} --workers {workers}{options} \\
  --pid "$pidfile" --daemon --error-logfile "$log"{args} {app}
mkdir -p "$(dirname "$pidfile")" "$(dirname "$log")"
if old=$(master); then echo "slot {{slot}} still runs gunicorn $old" >&2; exit 1; fi
"$@" --check-config || {{ echo "gunicorn cannot load the app from $release" >&2; exit 1; }}
"$@" || exit
wait_for {timeout} master >/dev/null || {{ echo "gunicorn did not start: see $log" >&2; exit 1; }}
"""

_STOP = """\
# gunicorn on slot {{slot}} (deploylib.recipes.gunicorn_slots): stop what runs there
{helpers}if p=$(master); then
  kill -TERM "$p"
  wait_for {timeout} gone "$p" \\
    || {{ echo "gunicorn $p on slot {{slot}} did not stop" >&2; exit 1; }}
fi
rm -f "$pidfile"
"""


def gunicorn_slots(
    app: str = "app:app",
    *,
    workers: int = 2,
    worker_class: str | None = None,
    args: Sequence[str] = (),
    pidfile: str = PIDFILE,
    logfile: str = LOGFILE,
    timeout: int = 60,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The blue-green ``switch`` step that serves each release with gunicorn on its slot.

    ``app``, ``worker_class``, ``args``, ``pidfile`` and ``logfile`` are shell text, as in
    ``run(...)``. ``timeout`` bounds each wait, in seconds: for the master's pid file, for a
    stopping master to finish its requests."""
    if workers < 1 or timeout < 1:
        raise ConfigError("gunicorn_slots(): workers and timeout must be at least 1")
    options = f" --worker-class {worker_class}" if worker_class else ""
    helpers = _HELPERS.format(pidfile=pidfile)
    start = _START.format(
        helpers=helpers,
        logfile=logfile,
        workers=int(workers),
        options=options,
        args="".join(f" {a}" for a in args),
        app=app,
        timeout=int(timeout),
    )
    stop = _STOP.format(helpers=helpers, timeout=int(timeout))
    return switch(start=start, stop=stop, sudo=sudo, before=before, after=after)
