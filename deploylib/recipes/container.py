"""Containers on blue-green slots: ``container(...)`` is the ``switch(start=..., stop=...)``
step of the ``blue_green`` strategy for a release whose artifact is an image
(``build(image=...)``, docs/containers.md).

Each slot runs one container, named ``{app}-{slot}``, on the host's network with ``PORT`` set
to the slot's port. ``start`` runs, from the release's directory, the image that release names
(its ``IMAGE`` file: a rollback starts the previous image, still on the host) with the release's
own variables (``.env.docker``), labelled with the app, the release and the slot; it returns
once docker started it (the checks then wait for it to answer). ``stop`` stops the slot's
container gracefully (``docker stop --time``: TERM, then KILL) and removes it; a slot with no
container is already stopped. Every docker command runs under the step's deadline.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from deploylib.errors import ConfigError
from deploylib.remote.images import (
    APP_LABEL,
    DOCKER_ENV_FILE,
    IMAGE_FILE,
    RELEASE_LABEL,
    SLOT_LABEL,
)
from deploylib.steps.base import Step
from deploylib.steps.dsl import HookSpec, switch

NAME = "{app}-{slot}"

_START = """\
# a container on slot {{slot}} (deploylib.recipes.container): start the release there
name={name}
image=$(head -n 1 {{release_path}}/{image_file} 2>/dev/null) && [ -n "$image" ] || image={{image}}
docker run --detach --name "$name" --network host --restart {restart} \\
  --env-file {{release_path}}/{env_file} -e PORT={{port}} \\
  --label {app_label}={{app}} --label {release_label}={{release}} --label {slot_label}={{slot}} \\
  {args}"$image"{command} >/dev/null \\
  || {{{{ echo "could not start $image as $name" >&2; exit 1; }}}}
"""

_STOP = """\
# a container on slot {{slot}} (deploylib.recipes.container): stop what runs there
name={name}
if docker container inspect "$name" >/dev/null 2>&1; then
  docker stop --time {timeout} "$name" >/dev/null && docker rm "$name" >/dev/null \\
    || {{{{ echo "could not stop the container $name on slot {{slot}}" >&2; exit 1; }}}}
fi
"""


def _words(words: Sequence[str], what: str) -> str:
    """argv words, each quoted (and its braces doubled: they are no placeholders)."""
    if isinstance(words, str) or not all(isinstance(w, str) and "\0" not in w for w in words):
        raise ConfigError(f"container({what}=...): a list of argv words, e.g. ['--memory', '256m']")
    return " ".join(shlex.quote(w).replace("{", "{{").replace("}", "}}") for w in words)


def container(
    *,
    args: Sequence[str] = (),
    command: Sequence[str] = (),
    stop_timeout: int = 10,
    restart: str = "unless-stopped",
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """The blue-green ``switch`` step that runs each release's image in a container on its slot.

    ``args``: more ``docker run`` options, as argv words (``["--memory", "256m"]``);
    ``command``: the container's command, as argv words (default: the image's); each word is
    quoted, never read by a shell. ``stop_timeout``: seconds a stopping container has before
    it is killed. ``restart``: docker's restart policy (``no``, ``on-failure``, ``always``,
    ``unless-stopped``)."""
    if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, int) or stop_timeout < 0:
        raise ConfigError("container(stop_timeout=...): whole seconds, 0 or more")
    if restart not in ("no", "on-failure", "always", "unless-stopped"):
        raise ConfigError(
            f"container(restart={restart!r}): no, on-failure, always or unless-stopped"
        )
    extra = _words(args, "args")
    start = _START.format(
        name=NAME,
        image_file=IMAGE_FILE,
        env_file=DOCKER_ENV_FILE,
        restart=restart,
        app_label=APP_LABEL,
        release_label=RELEASE_LABEL,
        slot_label=SLOT_LABEL,
        args=f"{extra} " if extra else "",
        command=f" {_words(command, 'command')}" if command else "",
    )
    stop = _STOP.format(name=NAME, timeout=int(stop_timeout))
    return switch(start=start, stop=stop, sudo=sudo, before=before, after=after)
