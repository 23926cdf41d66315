"""Container images as a release's artifact: the commands, as data, that build an image on the
controller, push it to the registry, pull it on a target, and remove a release's image and
stopped containers at cleanup (docs/containers.md).

Every value (the image reference, build arguments, paths, the registry) is an argv word,
quoted here; the registry's password only ever travels on ``docker login --password-stdin``'s
standard input. Each command carries its own deadline (``timeout``)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deploylib.commands import Command
from deploylib.remote.layout import Layout
from deploylib.remote.lock import guard_for
from deploylib.secrets import Secret

#: a registry as deploy.toml names it: ``host``, ``host:port``, or either with a path prefix
REGISTRY_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
#: a full image reference with a tag: ``[registry/]name[/name...]:tag``
REFERENCE_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
)
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
#: a build argument's or label's name
ARG_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: in a release directory: the image reference the release runs (one line)
IMAGE_FILE = "IMAGE"
#: in a release directory: the release's variables for ``docker run --env-file`` (0600)
DOCKER_ENV_FILE = ".env.docker"
#: the labels deploylib puts on images and containers
APP_LABEL, RELEASE_LABEL, SLOT_LABEL = "deploylib.app", "deploylib.release", "deploylib.slot"

_DIGESTS = "{{range .RepoDigests}}{{println .}}{{end}}"


@dataclass(frozen=True)
class Login:
    """Registry credentials: ``docker login`` reads the password from its standard input."""

    registry: str
    username: str | Secret
    password: Secret

    @property
    def env(self) -> dict[str, str | Secret]:
        """The user name travels in the environment (``$REGISTRY_USERNAME``), filled by the
        shell into ``docker login``'s argv (see ``login_lines``)."""
        return {USERNAME_VARIABLE: self.username}


#: the variable ``docker login`` reads the user name from
USERNAME_VARIABLE = "REGISTRY_USERNAME"


def _env(login: Login | None) -> dict[str, str | Secret]:
    return login.env if login else {}


def reference(image: str, registry: str | None) -> str:
    """The full reference of ``image`` (a filled ``build(image=...)``) in ``registry``;
    ``ValueError`` when it is not one docker takes."""
    full = f"{registry}/{image}" if registry else image
    if not REFERENCE_RE.fullmatch(full):
        raise ValueError(
            f"not an image reference docker takes: {full!r} (expected [registry/]name:tag, "
            "the name in lowercase)"
        )
    return full


def repository(ref: str) -> str:
    """``ref`` without its tag."""
    return ref.rsplit(":", 1)[0]


def registry_of(ref: str) -> str | None:
    """The registry host a reference names (its first component, when docker takes it for a
    host), else None (Docker Hub)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def login_lines(login: Login | None) -> str:
    """Shell run before a command that needs the registry's credentials: ``docker logout`` set
    to run however the shell ends (a deadline's TERM included: it exits through the trap), then
    ``docker login`` with the password on its standard input. The user name is ``docker
    login``'s ``--username`` argument (docker takes it no other way): it is on that command's
    line while it runs, not in deploylib's output (``$REGISTRY_USERNAME`` is filled by the
    shell)."""
    if login is None:
        return ""
    q = shlex.quote
    return (
        f"trap 'docker logout {q(login.registry)} >/dev/null 2>&1' EXIT; "
        "trap 'exit 143' TERM INT HUP; "
        f'docker login --username "${USERNAME_VARIABLE}" --password-stdin {q(login.registry)} '
        ">/dev/null || { echo 'docker login to the registry failed' >&2; exit 1; }; "
    )


def _with_login(script: str, login: Login | None) -> str:
    return f"{login_lines(login)}{{ {script}; }}" if login else script


def build_command(
    ref: str,
    context: str,
    *,
    cwd: str,
    dockerfile: str | None = None,
    target: str | None = None,
    build_args: Mapping[str, str | None] = {},
    labels: Mapping[str, str] = {},
    timeout: float | None = None,
) -> Command:
    """``docker build`` on the controller, every value an argv word. A build argument whose
    value is None is passed by name only: docker takes its value from the environment (the
    env files' variables), so it is never on the command line."""
    argv = ["docker", "build", "--tag", ref]
    if dockerfile:
        argv += ["--file", dockerfile]
    if target:
        argv += ["--target", target]
    for name, value in build_args.items():
        argv += ["--build-arg", name if value is None else f"{name}={value}"]
    for name, value in labels.items():
        argv += ["--label", f"{name}={value}"]
    argv += ["--", context]
    return Command.of(*argv, cwd=cwd, timeout=timeout, description="build image")


def push_command(ref: str, login: Login | None, timeout: float | None) -> Command:
    """Push ``ref`` from the controller, then print its repository digests (``repo@sha256:``)."""
    q = shlex.quote
    script = (
        f"docker push {q(ref)} >/dev/null && docker image inspect --format {q(_DIGESTS)} {q(ref)}"
    )
    return Command(
        _with_login(script, login),
        stdin=login.password if login else None,
        env=_env(login),
        timeout=timeout,
        description="push image",
    )


def digest_from(output: str, ref: str) -> str:
    """The digest the registry gave ``ref``, from ``push_command``'s output ("" if none)."""
    repo = repository(ref)
    for line in output.split():
        name, _, digest = line.partition("@")
        if name == repo and DIGEST_RE.fullmatch(digest):
            return digest
    return ""


def pull_command(
    layout: Layout,
    ref: str,
    digest: str,
    *,
    token: str | None,
    login: Login | None,
    timeout: float | None,
) -> Command:
    """Pull ``ref`` on a target and check that what it got is ``digest`` (when known)."""
    q = shlex.quote
    lines = [
        f"docker pull {q(ref)} >/dev/null || {{ echo {q('could not pull ' + ref)} >&2; exit 1; }}"
    ]
    if digest:
        expected = f"{repository(ref)}@{digest}"
        wrong = f"{ref} pulled here is not {digest}"
        lines.append(
            f"docker image inspect --format {q(_DIGESTS)} {q(ref)} | grep -Fqx {q(expected)} "
            f"|| {{ echo {q(wrong)} >&2; exit 1; }}"
        )
    return Command(
        _with_login(" && ".join(lines), login),
        stdin=login.password if login else None,
        env=_env(login),
        timeout=timeout,
        description="pull image",
        guard=guard_for(layout, token),
    )


def docker_env_text(variables: Mapping[str, str | Secret]) -> str:
    """The release's variables as ``docker run --env-file`` reads them: ``NAME=value`` a line,
    the value taken as it is to the end of the line (no quotes, no escapes). A value holding a
    newline cannot be written so: ``ValueError``."""
    lines = []
    for name, value in variables.items():
        text = value.reveal() if isinstance(value, Secret) else value
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError(
                f"{name} holds a line break: docker run --env-file takes one line per variable"
            )
        lines.append(f"{name}={text}\n")
    return "".join(lines)


def docker_env_command(
    layout: Layout, release: str, variables: Mapping[str, str | Secret], token: str | None
) -> Command:
    """Write the release's ``.env.docker`` (mode 0600) from stdin, in its directory."""
    q = shlex.quote
    release_path = layout.release_path(release)
    path = f"{release_path}/{DOCKER_ENV_FILE}"
    script = (
        f"mkdir -p {q(release_path)} && rm -f {q(path + '.tmp')} && "
        f"(umask 077 && cat > {q(path + '.tmp')}) && mv -fT {q(path + '.tmp')} {q(path)}"
    )
    content = docker_env_text(variables)
    secret = any(isinstance(v, Secret) for v in variables.values())
    return Command(
        script,
        stdin=Secret(content) if secret else content.encode(),
        description="container env file",
        guard=guard_for(layout, token),
    )


def cleanup_lines(layout: Layout, app: str, releases: Sequence[str]) -> list[str]:
    """Shell run before release dirs are removed: for each release that ran an image (its
    ``IMAGE`` file), its stopped containers and then its image go. A running container is never
    touched, and an image a container still uses stays (``docker image rm`` without force);
    what could not go is said on stderr, and is no failure."""
    q = shlex.quote
    lines = []
    for release in releases:
        image_file = f"{layout.release_path(release)}/{IMAGE_FILE}"
        filters = (
            f"--filter label={q(f'{APP_LABEL}={app}')} "
            f"--filter label={q(f'{RELEASE_LABEL}={release}')} "
            "--filter status=exited --filter status=created --filter status=dead"
        )
        lines.append(
            f"if [ -f {q(image_file)} ]; then "
            f"image=$(head -n 1 {q(image_file)}); "
            f'for c in $(docker ps -aq {filters}); do docker rm "$c" >/dev/null || true; done; '
            'docker image rm "$image" >/dev/null 2>&1 '
            f'|| echo "kept image $image of {release}: still in use here" >&2; fi'
        )
    return lines
