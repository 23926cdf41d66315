"""Docker Swarm services as the place a release runs (``orchestrator = "swarm"``): the shell,
as data, that makes a service run a release and follows swarm until it does, and the shell
that takes a release that never went live off the service (docs/containers.md).

Both run on the swarm manager from a release's directory, which holds its ``IMAGE``,
``REVISION`` (the digest) and ``.env.docker``. What the service runs is read from its spec's
labels (``deploylib.release``, and ``deploylib.port`` on blue-green slots), never from the
variables in it:

- no service yet: ``docker service create``;
- the spec is for this release already (swarm rolled a failed update back to it, or a put-back
  after a failure of deploylib's own checks): nothing is changed, the service is followed;
- the previous spec is this release's: ``docker service rollback`` (a rollback, or putting back
  the release a failed check left behind);
- else: ``docker service update`` to this release's image and variables.

Then swarm is followed until every task it wants running runs this release (each task's
``deploylib.release`` label), printing the tasks as they change; an update swarm rolled back or
paused, or one not done within ``[swarm] timeout``, is a failure. The variables' values reach
docker through its environment (``--env-add NAME``, read from the release's ``.env.docker`` in
a subshell), never its argv; every value in the script is quoted here."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploylib.remote.images import (
    APP_LABEL,
    DOCKER_ENV_FILE,
    IMAGE_FILE,
    RELEASE_LABEL,
    Login,
    login_lines,
)

if TYPE_CHECKING:  # the settings' model: pydantic is loaded only where deploy.toml is read
    from deploylib.config.schema import SwarmSettings

#: the spec label naming the port the service's tasks listen on (blue-green slots)
PORT_LABEL = "deploylib.port"


@dataclass(frozen=True)
class HealthCheck:
    """A health check for the service's tasks, run inside each container (``CMD-SHELL``)."""

    command: str
    interval: float = 2.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0

    def flags(self) -> list[str]:
        return [
            "--health-cmd",
            self.command,
            "--health-interval",
            seconds(self.interval),
            "--health-timeout",
            seconds(self.timeout),
            "--health-retries",
            str(self.retries),
            "--health-start-period",
            seconds(self.start_period),
        ]


@dataclass(frozen=True)
class Service:
    """What one service runs: its name, settings, and the release's own options."""

    name: str
    app: str
    settings: SwarmSettings
    #: more ``docker service create`` options (argv words), given when the service is made
    args: Sequence[str] = ()
    #: the containers' command (argv words; default: the image's)
    command: Sequence[str] = ()
    health: HealthCheck | None = None
    #: seconds ``follow`` waits for swarm, within the command's own deadline
    deadline: int = 600


def seconds(value: float) -> str:
    """A duration as docker reads it (``1.5s``)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def update_flags(settings: SwarmSettings, *, creating: bool) -> list[str]:
    """How swarm replaces tasks, and rolls them back, for ``create`` and ``update`` alike."""
    flags: list[str] = []
    if settings.mode == "global":
        flags += ["--mode", "global"] if creating else []
    else:
        flags += ["--replicas", str(settings.replicas)]
    flags += [
        "--update-parallelism",
        str(settings.parallelism),
        "--update-delay",
        seconds(settings.delay),
        "--update-order",
        settings.order,
        "--update-failure-action",
        settings.failure_action,
        "--update-monitor",
        seconds(settings.monitor),
        "--update-max-failure-ratio",
        f"{settings.max_failure_ratio:g}",
        "--rollback-parallelism",
        str(settings.parallelism),
        "--rollback-order",
        settings.order,
        "--rollback-monitor",
        seconds(settings.monitor),
        "--rollback-failure-action",
        "pause",
        "--stop-grace-period",
        seconds(settings.stop_grace_period),
    ]
    return flags


def _words(words: Sequence[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


_FIELD = re.compile(r"@([a-z_]+)@")


def _fill(template: str, **values: str) -> str:
    """``template`` with each ``@name@`` replaced by its value (already shell-quoted), in one
    pass: what a value holds is never read as a field."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


_COMMON = """\
svc=@service@
want=@want@
fail() { printf '%s\\n' "$*" >&2; exit 1; }
spec() { docker service inspect --format "$1" "$svc" 2>/dev/null; }
labels() { spec @spec_labels@; }
previous() { spec @previous_labels@; }
update_state() {
  spec '{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.StartedAt}}{{end}}'
}
message() { spec '{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}'; }
# every task swarm wants running runs the release wanted, and runs
converged() {
  ids=$(docker service ps -q --filter desired-state=running "$svc" 2>/dev/null) || return 1
  [ -n "$ids" ] || return 1
  states=$(docker inspect --type task --format @task_format@ $ids 2>/dev/null) || return 1
  count=$(printf '%s\\n' "$states" | grep -c .)
  # as many as the spec says (a rollback restores the previous spec's count)
  replicas=$(spec '{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{end}}')
  [ -z "$replicas" ] || [ "$count" -eq "$replicas" ] || return 1
  ! printf '%s\\n' "$states" | grep -qvx "${want%%|*} running" || return 1
  # and the tasks it replaced have stopped (their ports are free, nothing old serves)
  old=$(docker service ps -q --filter desired-state=shutdown "$svc" 2>/dev/null) || return 1
  [ -z "$old" ] || ! docker inspect --type task --format '{{.Status.State}}' $old 2>/dev/null \\
    | grep -qx running
}
# follow swarm until the service runs what is wanted; an update rolled back or paused fails
# (the state and start time seen before the change are an older update's)
follow() {
  started=$1
  end=$(( $(date +%s) + @timeout@ ))
  last=
  while :; do
    now=$(docker service ps --filter desired-state=running --format @shown@ "$svc" \\
      2>/dev/null | sed -E @ages@)
    if [ "$now" != "$last" ]; then printf '%s\\n' "$now" | sed 's/^/task /'; last=$now; fi
    status=$(update_state) || fail "cannot inspect the service $svc"
    state=${status%%|*}
    fresh=; [ -n "$started" ] && [ "$status" = "$started" ] || fresh=1
    case "$fresh:$state" in
      1:paused|1:rollback_paused) fail "swarm paused the update of $svc: $(message)" ;;
      *:updating|*:rollback_started|:*) ;;
      *)
        [ "$(labels)" = "$want" ] || fail "swarm rolled $svc back to its previous spec: $(message)"
        if converged; then echo "service $svc runs ${want%%|*} ($count tasks)"; return 0; fi ;;
    esac
    [ "$(date +%s)" -lt "$end" ] \\
      || fail "$svc did not run ${want%%|*} within @timeout@ s (update: ${state:-none})"
    sleep 1
  done
}
"""

_CONVERGE = """\
# the swarm service (deploylib.recipes.service): run @release@ there
@common@
[ -f @image_file@ ] && [ -f @env_file@ ] || fail "@image_file@ or @env_file@ is missing in $(pwd)"
image=$(head -n 1 @image_file@)
digest=$(sed -n 's/^digest //p' REVISION 2>/dev/null | head -n 1)
[ -z "$digest" ] || image="$image@$digest"
# the release's variables, in docker's environment only (never on its command line)
with_env() {
  (
    while IFS= read -r line || [ -n "$line" ]; do [ -z "$line" ] || export "$line"; done \\
      < @env_file@
    exec "$@"
  )
}
@login@status=$(update_state)
mode=$(spec '{{if .Spec.Mode.Global}}global{{else}}replicated{{end}}')
if [ -n "$mode" ] && [ "$mode" != @mode@ ]; then
  fail "the service $svc is $mode and [swarm] mode says @mode@: swarm cannot change a" \\
    "service's mode; remove the service (docker service rm $svc) or set mode back"
fi
if ! docker service inspect "$svc" >/dev/null 2>&1; then
  echo "creating the service $svc"
  set -- @create@ "$image"@command@
  with_env "$@" >/dev/null || fail "could not create the service $svc"
  status=
elif [ "$(labels)" = "$want" ]; then
  echo "the service $svc is on @release@ already"
  status=
elif [ "$(previous)" = "$want" ]; then
  echo "rolling the service $svc back to its previous spec (@release@)"
  docker service rollback --detach "$svc" >/dev/null || fail "could not roll back the service $svc"
else
  echo "updating the service $svc to @release@"
  set -- @update@
  names=$(spec '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' | cut -d= -f1)
  for name in $names; do set -- "$@" --env-rm "$name"; done
  for name in $(cut -d= -f1 @env_file@); do set -- "$@" --env-add "$name"; done
  set -- "$@" --image "$image" "$svc"
  with_env "$@" >/dev/null || fail "could not update the service $svc"
fi
follow "$status"
"""

_STOP = """\
# the swarm service (deploylib.recipes.service): take @release@ off the slot's port
@common@
docker service inspect "$svc" >/dev/null 2>&1 || exit 0
[ "$(labels)" = "$want" ] || exit 0
back=$(previous)
if [ -z "$back" ]; then
  # no spec before this release's: the service was made by this deploy, unless it is not
  # deploylib's (then it is left as it is)
  [ "$(spec '{{index .Spec.Labels "deploylib.app"}}')" = @app@ ] \\
    || fail "the service $svc has no spec to go back to and deploylib did not make it: left" \\
      "as it is"
  docker service rm "$svc" >/dev/null || fail "could not remove the service $svc"
  echo "removed the service $svc"
  exit 0
fi
status=$(update_state)
was=${back%%|*}
echo "rolling the service $svc back to its previous spec (${was:-one deploylib did not make})"
docker service rollback --detach "$svc" >/dev/null || fail "could not roll back the service $svc"
want=$back
follow "$status"
"""


def _common(service: Service, release: str, port: int | None) -> str:
    """Shell functions and values both scripts use."""
    q = shlex.quote
    return _fill(
        _COMMON,
        service=q(service.name),
        app=q(service.app),
        want=q(f"{release}|{port if port is not None else ''}"),
        spec_labels=q(
            f'{{{{index .Spec.Labels "{RELEASE_LABEL}"}}}}|'
            f'{{{{index .Spec.Labels "{PORT_LABEL}"}}}}'
        ),
        previous_labels=q(
            f'{{{{with .PreviousSpec}}}}{{{{index .Labels "{RELEASE_LABEL}"}}}}|'
            f'{{{{index .Labels "{PORT_LABEL}"}}}}{{{{end}}}}'
        ),
        task_format=q(
            f'{{{{index .Spec.ContainerSpec.Labels "{RELEASE_LABEL}"}}}} {{{{.Status.State}}}}'
        ),
        timeout=str(service.deadline),
        shown=q("{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}"),
        ages=q(r"s/ (less than a second|about an? [a-z]+|[0-9]+ [a-z]+) ago//"),
    )


def converge_script(service: Service, release: str, port: int | None, login: Login | None) -> str:
    """Make the service run ``release`` (from its directory, the script's working directory)
    and follow swarm until it does; with ``port`` (a blue-green slot) the tasks get
    ``PORT=port`` and the spec says so."""
    settings = service.settings
    port_label = ["--label", f"{PORT_LABEL}={port}"] if port is not None else []
    auth = ["--with-registry-auth"] if login else []
    health = service.health.flags() if service.health else []
    create = [
        *("docker", "service", "create", "--detach", "--name", service.name),
        *("--label", f"{APP_LABEL}={service.app}", "--label", f"{RELEASE_LABEL}={release}"),
        *port_label,
        *("--container-label", f"{APP_LABEL}={service.app}"),
        *("--container-label", f"{RELEASE_LABEL}={release}"),
        *("--env-file", DOCKER_ENV_FILE),
        *(["--env", f"PORT={port}"] if port is not None else []),
        *update_flags(settings, creating=True),
        *health,
        *auth,
        *service.args,
    ]
    update = [
        *("docker", "service", "update", "--detach"),
        *("--label-add", f"{RELEASE_LABEL}={release}"),
        *(
            ["--label-add", f"{PORT_LABEL}={port}"]
            if port is not None
            else ["--label-rm", PORT_LABEL]  # on slots before: in place now
        ),
        *("--container-label-add", f"{RELEASE_LABEL}={release}"),
        *(["--env-add", f"PORT={port}"] if port is not None else []),
        *update_flags(settings, creating=False),
        *health,
        *auth,
    ]
    return _fill(
        _CONVERGE,
        common=_common(service, release, port),
        release=release,
        image_file=IMAGE_FILE,
        env_file=DOCKER_ENV_FILE,
        login=login_lines(login) + "\n" if login else "",
        mode=settings.mode,
        create=_words(create),
        command=(" " + _words(service.command)) if service.command else "",
        update=_words(update),
    )


def stop_script(service: Service, release: str, port: int | None) -> str:
    """Take ``release`` off the service where its spec runs it on ``port`` (a blue-green slot
    whose release never went live): back to the previous spec, or, with none (the service's
    first release), the service removed. Anything else runs there: nothing to do."""
    return _fill(_STOP, common=_common(service, release, port), release=release)
