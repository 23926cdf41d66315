"""systemd: a unit written by deploylib, restarted through ``sudo -n`` when the deploy user is
not root.

``systemd(service, exec_start=...)`` is the ``switch(restart=...)`` step. Its script renders the
unit into ``{shared_path}/systemd/<service>.service`` (the paths in it are the target's), installs
it into ``unit_dir`` and runs ``systemctl daemon-reload`` when it changed, enables the service
once, then ``systemctl restart`` (or ``reload``) it. ``ExecStart`` runs from ``current``: a
restart starts the release ``current`` points at, with its own ``.venv``; a put-back restarts
the old one. ``reload`` sends the main process HUP, which for gunicorn keeps the old venv: it
is only right for releases whose venv did not change.

As a deploy user other than root, each root command runs as ``sudo -n <command>``, which needs
the NOPASSWD rule ``sudoers_rule`` prints; without it the command fails at once, saying so.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

from deploylib.errors import ConfigError
from deploylib.recipes.gunicorn import LOGFILE
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, switch
from deploylib.sudo import SUDOERS_FILE

SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
UNIT_DIR = "/etc/systemd/system"
#: the placeholders a unit may use, and the shell variables the script holds them in
_VARIABLES = {
    "current_path": "dl_current",
    "shared_path": "dl_shared",
    "deploy_to": "dl_deploy_to",
    "app": "dl_app",
    "env": "dl_env",
}

_UNIT = """\
[Unit]
Description={description}
After=network-online.target
Wants=network-online.target

[Service]
Type={type}
{user}WorkingDirectory={{current_path}}
EnvironmentFile=-{{current_path}}/.env
ExecStart={exec_start}
ExecReload=/bin/kill -s HUP $MAINPID
KillMode=mixed
TimeoutStopSec={stop_timeout}
Restart=on-failure
{extra}
[Install]
WantedBy=multi-user.target
"""

_SCRIPT = """\
# systemd (deploylib.recipes): install the unit when it changed, then {action} {service}
dl_current={current_path} dl_shared={shared_path} dl_deploy_to={deploy_to} dl_app={app} \\
  dl_env={env}
service={service_q}
unit_dir={unit_dir}
rendered="$dl_shared/systemd/$service.service"
as_root() {{  # as_root COMMAND...: directly as root, else through sudo -n
  if [ "$(id -u)" -eq 0 ]; then "$@"; return; fi
  sudo -n "$@" && return
  __s=$?
  if ! sudo -n -l "$@" >/dev/null 2>&1; then
    echo "deploylib: sudo -n may not run '$*' without a password" \\
      "(deploylib never waits for one). Allow it in {sudoers} (edit with visudo -f {sudoers}):" >&2
    __c=$(command -v systemctl || echo /usr/bin/systemctl)
    echo "  $(id -un) ALL=(root) NOPASSWD: $__c daemon-reload, $__c enable $service.service," \\
      "$__c {action} $service.service," \\
      "$(command -v install) -m 0644 $rendered $unit_dir/$service.service" >&2
  fi
  return $__s
}}
mkdir -p "$dl_shared/systemd"
cat > "$rendered.tmp" <<DEPLOYLIB_UNIT
{unit}DEPLOYLIB_UNIT
mv -f "$rendered.tmp" "$rendered"
if ! cmp -s "$rendered" "$unit_dir/$service.service"; then
  as_root install -m 0644 "$rendered" "$unit_dir/$service.service" || exit
  as_root systemctl daemon-reload || exit
fi
systemctl is-enabled --quiet "$service.service" 2>/dev/null \\
  || as_root systemctl enable "$service.service" || exit
as_root systemctl {action} "$service.service"
"""


def _heredoc_text(text: str) -> str:
    """``text`` for an unquoted here-document: literal, except the placeholders it may use."""
    text = text.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")
    for name, variable in _VARIABLES.items():
        text = text.replace("{" + name + "}", "${" + variable + "}")
    return text


def systemd_unit(
    service: str,
    *,
    exec_start: str,
    user: str | None = None,
    description: str = "",
    type: Literal["simple", "exec", "notify", "forking"] = "exec",
    stop_timeout: int = 30,
    service_settings: Mapping[str, str] | None = None,
) -> str:
    """The unit's text, ``{current_path}``, ``{shared_path}``, ``{deploy_to}``, ``{app}`` and
    ``{env}`` in it still to fill."""
    if not SERVICE_NAME.fullmatch(service):
        raise ConfigError(f"systemd(): not a service name: {service!r}")
    for text in (exec_start, description, *(service_settings or {}).values()):
        if "\n" in text:
            raise ConfigError("systemd(): unit settings are single lines")
    return _UNIT.format(
        description=description or f"{service} ({{app}} {{env}}, deployed by deploylib)",
        type=type,
        user=f"User={user}\n" if user else "",
        exec_start=exec_start,
        stop_timeout=int(stop_timeout),
        extra="".join(f"{k}={v}\n" for k, v in (service_settings or {}).items()),
    )


def systemd_restart(
    service: str,
    *,
    exec_start: str,
    action: Literal["restart", "reload", "reload-or-restart"] = "restart",
    unit_dir: str = UNIT_DIR,
    **unit: object,
) -> str:
    """The restart script of ``systemd(...)``."""
    text = systemd_unit(service, exec_start=exec_start, **unit)  # type: ignore[arg-type]
    return _SCRIPT.format(
        action=action,
        service=service,
        service_q=shlex.quote(service),
        unit_dir=shlex.quote(unit_dir),
        sudoers=SUDOERS_FILE,
        unit=_heredoc_text(text),
        **{name: "{" + name + "}" for name in _VARIABLES},
    )


def gunicorn_command(
    app: str = "app:app",
    *,
    bind: str = "127.0.0.1:8000",
    workers: int = 2,
    worker_class: str | None = None,
    preload: bool = False,
    args: Sequence[str] = (),
) -> str:
    """gunicorn in the foreground from the release's venv, for ``exec_start``."""
    words = ["{current_path}/.venv/bin/python", "-m", "gunicorn", "--bind", bind]
    words += ["--workers", str(int(workers))]
    words += ["--worker-class", worker_class] if worker_class else []
    words += ["--preload"] if preload else []
    words += ["--error-logfile", LOGFILE, *args, app]
    return " ".join(words)


def systemd(
    service: str,
    *,
    exec_start: str,
    action: Literal["restart", "reload", "reload-or-restart"] = "restart",
    user: str | None = None,
    description: str = "",
    type: Literal["simple", "exec", "notify", "forking"] = "exec",
    stop_timeout: int = 30,
    service_settings: Mapping[str, str] | None = None,
    unit_dir: str = UNIT_DIR,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The ``switch`` step that runs the release as the systemd service ``service`` (see the
    module's docstring). ``exec_start`` is the unit's ``ExecStart=``, e.g.
    ``gunicorn_command("app:app")``; ``user`` its ``User=``; ``service_settings`` more
    ``[Service]`` lines."""
    return switch(
        restart=systemd_restart(
            service,
            exec_start=exec_start,
            action=action,
            unit_dir=unit_dir,
            user=user,
            description=description,
            type=type,
            stop_timeout=stop_timeout,
            service_settings=service_settings,
        ),
        before=before,
        after=after,
    )
