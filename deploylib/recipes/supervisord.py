"""supervisord: a supervisord of the app's own, its config and socket under ``shared/``.

``supervisord(program, command=...)`` is the ``switch(restart=...)`` step. Its script writes
``{shared_path}/supervisor/supervisord.conf`` (one ``[program:...]`` whose ``command`` runs from
``current``, in the foreground), starts supervisord with it when it is not running, else
applies a changed config (``supervisorctl update``) and restarts the program; then waits until
the program is ``RUNNING``. A put-back restarts the program on the old release the same way.
"""

from __future__ import annotations

import re
import shlex

from deploylib.errors import ConfigError
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, switch

PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: the placeholders the config may use, and the shell variables the script holds them in
SOCKET = "{shared_path}/supervisor/supervisor.sock"
_VARIABLES = {"current_path": "dl_current", "shared_path": "dl_shared", "app": "dl_app"}

_CONFIG = """\
[unix_http_server]
file={socket}
chmod=0700

[supervisord]
pidfile={{shared_path}}/supervisor/supervisord.pid
logfile={{shared_path}}/log/supervisord.log
directory={{shared_path}}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}

[program:{program}]
command={command}
directory={{current_path}}
autostart=true
autorestart=true
startsecs={startsecs}
stopsignal=TERM
stopwaitsecs={stop_timeout}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={{shared_path}}/log/{program}.log
"""

_SCRIPT = """\
# supervisord (deploylib.recipes): start it with its config, or restart {program}
dl_current={current_path} dl_shared={shared_path} dl_app={app}
conf="$dl_shared/supervisor/supervisord.conf"
ctl() {{ {supervisorctl} -c "$conf" "$@"; }}
running() {{ ctl status {program} 2>/dev/null | grep -q RUNNING; }}
mkdir -p "$dl_shared/supervisor" "$dl_shared/log"
cat > "$conf.tmp" <<DEPLOYLIB_CONF
{config}DEPLOYLIB_CONF
mv -f "$conf.tmp" "$conf"
if ctl pid 2>/dev/null | grep -qx '[0-9][0-9]*'; then
  ctl update >/dev/null && ctl restart {program} || exit
else
  {supervisord} -c "$conf" || exit
fi
__n={waits}
until running; do
  [ "$__n" -gt 0 ] || {{ echo "{program} is not RUNNING:" >&2; ctl status {program} >&2; exit 1; }}
  __n=$((__n - 1)); sleep 0.1
done
"""


def _conf_text(text: str) -> str:
    """``text`` for the config's here-document: literal (``%`` doubled, as supervisord reads
    ``%(...)s``), except the placeholders it may use."""
    text = text.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`").replace("%", "%%")
    for name, variable in _VARIABLES.items():
        text = text.replace("{" + name + "}", "${" + variable + "}")
    return text


def supervisord_restart(
    program: str,
    *,
    command: str,
    supervisord: str = "supervisord",
    supervisorctl: str = "supervisorctl",
    socket: str = SOCKET,
    startsecs: int = 1,
    stop_timeout: int = 30,
    timeout: int = 60,
) -> str:
    """The restart script of ``supervisord(...)``."""
    if not PROGRAM_NAME.fullmatch(program):
        raise ConfigError(f"supervisord(): not a program name: {program!r}")
    if "\n" in command or "\n" in socket:
        raise ConfigError("supervisord(): the command and the socket are one line each")
    config = _CONFIG.format(
        socket=socket,
        program=program,
        command=command,
        startsecs=int(startsecs),
        stop_timeout=int(stop_timeout),
    )
    return _SCRIPT.format(
        program=shlex.quote(program),
        supervisord=supervisord,
        supervisorctl=supervisorctl,
        config=_conf_text(config),
        waits=int(timeout) * 10,
        **{name: "{" + name + "}" for name in _VARIABLES},
    )


def supervisord(
    program: str,
    *,
    command: str,
    supervisord: str = "supervisord",
    supervisorctl: str = "supervisorctl",
    socket: str = SOCKET,
    startsecs: int = 1,
    stop_timeout: int = 30,
    timeout: int = 60,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The ``switch`` step that runs the release as supervisord's program ``program`` (see the
    module's docstring). ``command`` runs in the foreground from ``current``, e.g.
    ``gunicorn_command("app:app")``; ``supervisord``/``supervisorctl`` are the commands to run
    them (shell text: ``"/opt/supervisor/bin/supervisord"``). ``socket`` is supervisorctl's
    socket (a Unix socket's path has at most 107 bytes: move it out of a deep ``deploy_to``)."""
    return switch(
        restart=supervisord_restart(
            program,
            command=command,
            supervisord=supervisord,
            supervisorctl=supervisorctl,
            socket=socket,
            startsecs=startsecs,
            stop_timeout=stop_timeout,
            timeout=timeout,
        ),
        sudo=sudo,
        before=before,
        after=after,
    )
